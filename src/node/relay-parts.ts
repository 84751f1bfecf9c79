/**
 * Wires the relay area into a node: the exit as a libp2p service, the
 * SOCKS5/HTTP ingress as a node part, both from the node config.
 */

import { join } from 'node:path'
import { TUNNEL_PROTOCOL, second } from '../constants.ts'
import { bytesText } from '../byte-units.ts'
import { tunnelExit } from '../relay/exit.ts'
import { KnownPeerSelector } from '../relay/exit-selector.ts'
import { HttpProxyServer } from '../relay/http-proxy.ts'
import { Ingress } from '../relay/ingress.ts'
import { parsePortList } from '../relay/ports.ts'
import { Socks5Server } from '../relay/socks5.ts'
import { TunnelClient } from '../relay/tunnel-client.ts'
import { MAX_OUTBOUND_TUNNELS } from '../relay/tunnel-protocol.ts'
import { WarmStreams } from '../relay/warm-streams.ts'
import { ExitLiveness } from '../relay/exit-liveness.ts'
import { connectionFor, openStream, pingOver } from './open-stream.ts'
import { isClosePending } from './tunnel-close-guard.ts'
import { mbpsToBytesPerSecond } from '../relay/shaping.ts'
import { connectThroughTunnel } from '../relay/app-connect.ts'
import { probe } from '../relay/probe.ts'
import { HttpError } from './control-api.ts'
import type { ProbeOptions } from '../relay/probe.ts'
import type { SilentRelays } from './silent-relays.ts'
import { RelayFailover } from './relay-failover.ts'
import type { SparebandConfig } from './config.ts'
import type { NodePart, SparebandNode } from './spareband-node.ts'
import type { ExitStats, TunnelExit } from '../relay/exit.ts'
import type { IngressStats } from '../relay/ingress.ts'
import type { ExitSelector } from '../relay/exit-selector.ts'
import type { RoutingPart } from './routing-part.ts'
import type { AccountingCore, AccountingPart } from './accounting-part.ts'
import type { Connection, Stream } from '@libp2p/interface'

const GB = 1e9

export function exitServices (config: SparebandConfig, dataDir: string, accounting: AccountingCore | undefined): Record<string, (components: any) => unknown> {
  if (!config.exit.enabled) return {}
  const e = config.exit
  return {
    exit: tunnelExit({
      policy: {
        allowedPorts: parsePortList(e.allowed_ports),
        allowPrivateTargets: e.allow_private_targets,
        deniedCidrs: e.denied_cidrs,
        deniedDomains: e.denied_domains
      },
      maxTunnels: e.max_tunnels,
      maxTunnelsPerConsumer: e.max_tunnels_per_consumer,
      downloadRate: mbpsToBytesPerSecond(e.download_mbps),
      uploadRate: mbpsToBytesPerSecond(e.upload_mbps),
      perConsumerRate: mbpsToBytesPerSecond(e.per_consumer_mbps),
      dailyQuotaBytes: e.daily_quota_gb * GB,
      monthlyQuotaBytes: e.monthly_quota_gb * GB,
      quotaFile: join(dataDir, 'exit-usage.json'),
      stateFile: join(dataDir, 'exit-state.json'),
      schedule: e.schedule,
      idleTimeoutMs: e.idle_timeout_seconds * second,
      connectTimeoutMs: e.connect_timeout_seconds * second,
      accounting: accounting?.exitSessions
    })
  }
}

/** `status().exit` of a node whose exit is off (`--no-supply`). */
export interface DisabledExitStatus {
  enabled: false
  bytesIn: 0
  bytesOut: 0
  tunnelsOpen: 0
  tunnelsConnecting: 0
  tunnelsTotal: 0
  denied: 0
}

/** What the exit offers, as configured: what its capacity ad says, and when it shares. */
export interface ExitOffer {
  /** Credits per GB (exit.price_per_gb). */
  pricePerGb: number
  /** What the capacity ad claims: exit.capacity_mbps, or exit.download_mbps where that caps it lower. */
  capacityMbps: number
  /** exit.schedule, as written. */
  schedule: string
}

/** `status().exit`: the exit's counters, limits, quota, policy and offer; `enabled` tells which. */
export type ExitStatus = (ExitStats & ExitOffer) | DisabledExitStatus

/** `status().proxy`: where the proxies listen, what they carried, and the warm streams kept to exits. */
export interface ProxyStatus extends IngressStats {
  socksPort: number
  httpPort: number
  /** Client connections to the proxies open now (in their handshake, tunnelled, or refused and draining for at most 10 s): one that only grows means connections are kept that should not be. */
  clientsOpen: number
  warmStreams: { ready: number, opening: number, hits: number, misses: number }
  /** Exits found gone (no answer to a ping, nothing heard) while a tunnel request waited on them or their tunnels were silent: our tunnels through them were ended. */
  exitsDropped: number
}

/** A relayed connection to an exit found gone is ended only when nothing came in on it for this long (see proxyPart's drop). */
const SILENT_CIRCUIT_MS = 5 * second

/**
 * The capacity an exit advertises: exit.capacity_mbps, but no more than its
 * total download cap (targets to consumers, the direction most traffic
 * runs), which it could never carry past. Consumers rank exits by the
 * capacity they claim, so one capped at 10 Mbit/s that claimed the default
 * 100 drew ten times the traffic it could carry.
 */
export function advertisedCapacityMbps (exit: Pick<SparebandConfig['exit'], 'capacity_mbps' | 'download_mbps'>): number {
  return exit.download_mbps > 0 ? Math.min(exit.capacity_mbps, exit.download_mbps) : exit.capacity_mbps
}

export function exitPart (node: SparebandNode): NodePart {
  const exit = (): TunnelExit | undefined => node.libp2p.services.exit as TunnelExit | undefined
  return {
    name: 'exit',
    // before accounting stops (parts stop in reverse order): the tunnels end
    // first, so the final receipts accounting then publishes cover their bytes
    // (libp2p stops the service again later; the second stop does nothing)
    stop: async () => { await exit()?.stop() },
    status: (): ExitStatus => {
      const s = exit()?.status()
      if (s == null) return { enabled: false, bytesIn: 0, bytesOut: 0, tunnelsOpen: 0, tunnelsConnecting: 0, tunnelsTotal: 0, denied: 0 }
      const c = node.config.exit
      return { ...s, pricePerGb: c.price_per_gb, capacityMbps: advertisedCapacityMbps(c), schedule: c.schedule }
    },
    warnings: () => {
      const warnings: string[] = []
      if (node.config.exit.enabled && node.config.exit.allow_private_targets) warnings.push('exit.allow_private_targets is ON: consumers can reach this machine and its LAN. Use this for local testnets only.')
      const s = exit()?.status()
      if (s?.quotaSaveError != null) warnings.push(`the exit's data usage counters could not be saved to ${join(node.dataDir, 'exit-usage.json')} since ${s.quotaSaveError.since} (${s.quotaSaveError.error}): a restart would count the quotas from the last save; free some disk space or make the data directory writable`)
      // states that refuse every new tunnel: the start log says when each begins and ends
      if (s?.quotaExceeded != null) {
        const daily = s.quotaExceeded === 'daily'
        const used = daily ? s.quota.dayBytes : s.quota.monthBytes
        const limit = daily ? s.quota.dailyLimit : s.quota.monthlyLimit
        warnings.push(`the exit's ${s.quotaExceeded} data quota is used up: ${bytesText(used)} of ${bytesText(limit)} carried; it takes no new tunnels (QUOTA_EXCEEDED) until the ${daily ? 'day' : 'month'} turns (exit.${daily ? 'daily' : 'monthly'}_quota_gb)`)
      }
      if (s != null && !s.withinSchedule) warnings.push(`the exit is outside its share schedule: it takes no new tunnels (OUTSIDE_SCHEDULE), and ended the open ones, while exit.schedule = "${node.config.exit.schedule}" (local time) keeps it closed`)
      if (s?.paused === true) {
        const until = s.stateNotSaved == null ? ', across restarts, until "spareband resume" (POST /v1/exit/resume)' : ` until "spareband resume", but only until the node stops: ${s.stateNotSaved}`
        warnings.push(`the exit is paused${s.pausedSince != null ? ` (since ${s.pausedSince})` : ''}: it takes no new tunnels${until}`)
      } else if (s?.stateNotSaved != null) {
        warnings.push(`the exit was resumed, but only until the node stops (a restart goes back to the state last saved): ${s.stateNotSaved}`)
      }
      return warnings
    },
    routes: {
      'exit/pause': { post: () => { requireExit(exit()).pause(); return exit()!.status() } },
      'exit/resume': { post: () => { requireExit(exit()).resume(); return exit()!.status() } }
    }
  }
}

function requireExit (exit: TunnelExit | undefined): TunnelExit {
  if (exit == null) throw Object.assign(new Error('this node is not an exit (exit.enabled = false: --no-supply, SPAREBAND_SUPPLY=false or config.toml)'), { status: 409 })
  return exit
}

export interface ProxyPart extends NodePart {
  ingress: Ingress
  socks: Socks5Server
  http: HttpProxyServer
}

export function proxyPart (node: SparebandNode): ProxyPart | undefined {
  const config = node.config
  if (!config.proxy.enabled) return undefined
  // the routing part, when present, chooses exits from the DHT with learned scores
  const selector: ExitSelector = node.part<RoutingPart>('routing')?.selector ?? new KnownPeerSelector(node.libp2p)
  const consumerAccounting = node.part<AccountingPart>('accounting')?.consumer
  const log = node.libp2p.logger.forComponent('spareband:relay:ingress')
  // streams warmed on a relayed connection, which are not used once a direct one exists,
  // and the connection of each, which is not used once its close is pending
  const onLimited = new WeakSet<Stream>()
  const connectionOf = new WeakMap<Stream, Connection>()
  const warm = new WarmStreams({
    perExit: config.proxy.warm_streams,
    log: node.libp2p.logger.forComponent('spareband:relay:warm-streams'),
    open: async exit => {
      // on a connection we have: warming never dials
      const connection = connectionFor(node.libp2p, exit, true)
      if (connection == null) return undefined
      const stream = await connection.newStream(TUNNEL_PROTOCOL, { signal: AbortSignal.timeout(10 * second), runOnLimitedConnection: true, maxOutboundStreams: MAX_OUTBOUND_TUNNELS })
      if (connection.limits != null) onLimited.add(stream)
      connectionOf.set(stream, connection)
      return stream
    },
    stale: (exit, stream) => (onLimited.has(stream) && connectionFor(node.libp2p, exit, false) != null) || isClosePending(connectionOf.get(stream))
  })
  // a relay that died told from an exit that went away (relay-failover.ts)
  const failover = new RelayFailover(node.libp2p, node.libp2p.services.silentRelays as SilentRelays)
  const liveness = new ExitLiveness({
    log: node.libp2p.logger.forComponent('spareband:relay:exit-liveness'),
    ping: async (exit, options) => {
      const connection = connectionFor(node.libp2p, exit, true)
      if (connection == null) return false
      // the relays of our circuits to it are pinged too, so that an exit found gone can be told from a relay that died
      failover.checking(exit, connection)
      await pingOver(connection, options)
      failover.answered(exit)
      return true
    },
    heardSince: (exit, since) => ingress.heardSince(exit, since),
    silentExits: ms => ingress.silentExits(ms),
    // our tunnels, and our relayed connections to it: a direct connection may
    // carry our relay reservation, the DHT, a consumer's tunnels through us
    drop: (exit, reason) => {
      warm.forget(exit, reason)
      ingress.abortTunnelsTo(exit, reason)
      // a circuit to the exit carries only what goes between the two of us. One
      // whose relay died stayed until the silence on it was noticed, and took
      // every new tunnel meanwhile, while the exit was reachable again through
      // another relay: ended, the next tunnel dials what its newest ad names.
      // Only one silent for a while too: a slow exit's circuit still brings its
      // pings, and may carry its tunnels through our exit and the receipts
      // When a relay died, only the circuits through relays that did not answer go (relay-failover.ts)
      for (const connection of failover.gone(exit, SILENT_CIRCUIT_MS)) connection.abort(reason)
      selector.unreachable?.(exit)
    }
  })
  // `spareband providers` says which exits requests ask last
  node.part<RoutingPart>('routing')?.selector.setAskedLast(exit => liveness.avoided(exit))
  const client = new TunnelClient({
    logger: node.libp2p.logger,
    dialProtocol: async (peer, protocol, options) => openStream(node.libp2p, peer, protocol, options)
  }, {
    selector,
    accounting: consumerAccounting,
    warm,
    liveness,
    ownExitRegion: config.exit.enabled ? config.region : undefined,
    otherRoute: async exit => failover.otherRoute(exit)
  })
  const ingress = new Ingress({
    client,
    credentials: { username: config.proxy.username, password: config.proxy.password },
    defaultRegion: config.proxy.default_region,
    idleTimeoutMs: config.exit.idle_timeout_seconds * second,
    log,
    accounting: consumerAccounting,
    onTransfer: (exit, sample) => selector.reportTransfer?.(exit, sample),
    onRefusal: notice => node.safeDispatchEvent('proxy:refused', { detail: notice }),
    onFailure: notice => node.safeDispatchEvent('proxy:failed', { detail: notice })
  })
  // our own credit spent: the open tunnels end too, not only when each exit hears of it (a minute later)
  consumerAccounting?.setCutOff(reason => {
    const ended = ingress.abortAll(new Error(reason))
    if (ended > 0) log('%s: ended %d open tunnel(s)', reason, ended)
  })
  const socks = new Socks5Server(ingress, config.proxy.host, config.proxy.socks_port)
  const http = new HttpProxyServer(ingress, config.proxy.host, config.proxy.http_port)
  // named when the port is taken, so the operator knows what to change
  socks.setting = 'proxy.socks_port / --socks-port'
  http.setting = 'proxy.http_port / --http-port'
  return {
    name: 'proxy',
    ingress,
    socks,
    http,
    start: async () => {
      liveness.start()
      await socks.start()
      try {
        await http.start()
      } catch (err) {
        await socks.stop()
        throw err
      }
    },
    stop: async () => {
      warm.stop()
      liveness.stop()
      ingress.closeAll()
      await Promise.all([socks.stop(), http.stop()])
    },
    status: (): ProxyStatus => ({ socksPort: socks.port, httpPort: http.port, clientsOpen: ingress.clientsOpen, ...ingress.stats, warmStreams: { ...warm.counts(), ...warm.stats }, exitsDropped: liveness.dropped }),
    routes: {
      // `spareband probe`: a failed probe is still an answer (ok: false); only bad input is an HTTP error
      probe: {
        post: async (_req: unknown, body: unknown) => {
          const { url, options } = probeRequest(body)
          try {
            return await probe(async (host, port, o) => connectThroughTunnel(ingress, host, port, o), url, options)
          } catch (err: any) {
            if (err instanceof TypeError) throw new HttpError(400, err.message)
            throw err
          }
        }
      }
    }
  }
}

/** The body of POST /v1/probe: `{ url, region?, session?, timeoutMs?, insecure?, ca? }`. */
function probeRequest (body: unknown): { url: string, options: ProbeOptions } {
  const b = (body ?? {}) as Record<string, unknown>
  if (typeof body !== 'object' || body == null || Array.isArray(body)) throw new HttpError(400, 'the body must be a JSON object: { "url": "https://...", "region": "de" }')
  const optionalString = (key: string): string | undefined => {
    if (b[key] == null) return undefined
    if (typeof b[key] !== 'string') throw new HttpError(400, `${key} must be a string`)
    return b[key]
  }
  const url = optionalString('url')
  if (url == null) throw new HttpError(400, 'url is missing')
  if (b.timeoutMs != null && typeof b.timeoutMs !== 'number') throw new HttpError(400, 'timeoutMs must be a number')
  if (b.insecure != null && typeof b.insecure !== 'boolean') throw new HttpError(400, 'insecure must be true or false')
  const ca = optionalString('ca')
  if (ca != null && !ca.includes('-----BEGIN CERTIFICATE-----')) throw new HttpError(400, 'ca must be PEM certificates (-----BEGIN CERTIFICATE-----)')
  return { url, options: { region: optionalString('region'), session: optionalString('session'), timeoutMs: b.timeoutMs as number | undefined, insecure: b.insecure as boolean | undefined, ca } }
}
