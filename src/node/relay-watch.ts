/**
 * A node behind NAT is reached only through the relays it holds
 * reservations on. When such a relay's host dies without a word (power
 * lost, a line cut), TCP keeps the connection up, and the node found out
 * only when silent-connections.ts ended it, 25 s of silence later: that
 * long, and the time to reserve elsewhere and advertise it, an exit with
 * one reservation could not be reached at all (about 40 s in the
 * namespace test).
 *
 * So the relays a node depends on are watched closer: those in its own
 * circuit addresses (it holds a reservation on each), and those a
 * consumer's failover check found silent (silent-relays.ts: its DHT
 * queries, which go on using the open connection, waited on the dead
 * relay until silent-connections.ts ended it). One that has said nothing
 * on a connection for `pingAfterMs` is pinged over that very connection (a
 * live relay answers in milliseconds, and a busy connection is heard from
 * all the time: data, window updates), and one nothing came in from for
 * `silentAfterMs` is ended: libp2p's relay transport then drops the
 * reservation and reserves on another relay, and the new circuit is
 * advertised.
 *
 * The relay's address is then not dialled for a while (gone-peers.ts), but
 * only when the node's own line is known to have worked all along: from
 * the moment the relay left its ping unanswered (`suspectAfterMs`), a
 * control peer is pinged every sweep, one the node was connected to
 * before the relay went quiet (a connection opened since proves nothing:
 * after a blip of the node's own line, new connections work at once while
 * old ones wait out TCP's growing retransmission timers), on a public
 * address when the relay's is public (a LAN peer answers through an
 * outage of the Internet line). If such a peer was silent for
 * `deafAfterMs` meanwhile, or none answered just before the verdict, or
 * the relay is heard on another connection, nothing is paused. And a
 * fresh TCP connection to the relay's address, tried `probeLeadMs` before
 * the verdict, must fail: the old connection may only be waiting out its
 * retransmission timers after a blip too short for the controls to show,
 * where a new one gets through at once; a relay first watched late in its
 * silence (marked silent on the way) has its verdict wait up to
 * `probeLeadMs` for it. Only a connection the node dialled is paused so
 * (an inbound one's address is a port nobody dials).
 *
 * A relay stalled that long is taken for gone: consumers judge an exit
 * behind it gone sooner (8 s, exit-liveness.ts), and a relay that comes
 * back is reserved on again like any other.
 */

import { connect } from 'node:net'
import { isPrivate } from '@libp2p/utils'
import { SilentPeerError, SweepClock, lastHeard, openedAt } from './silent-connections.ts'
import { pingOver } from './open-stream.ts'
import { relayOf } from '../routing/advertised-relays.ts'
import { second } from '../constants.ts'
import type { GonePeers } from './gone-peers.ts'
import type { AbortOptions, ComponentLogger, Connection, Logger, Startable } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** A relay connection quiet this long is pinged. */
export const RELAY_WATCH_PING_AFTER_MS = 3 * second
/** Quiet this long, the relay left that ping unanswered: control peers are pinged from now on. */
export const RELAY_WATCH_SUSPECT_AFTER_MS = 4 * second
/** A relay connection nothing came in on for this long is ended. */
export const RELAY_WATCH_SILENT_AFTER_MS = 10 * second
export const RELAY_WATCH_SWEEP_INTERVAL_MS = second
/** Control peers pinged every sweep, none answering for this long: the node's own line may be down, and nothing is paused. */
export const RELAY_WATCH_DEAF_AFTER_MS = 2500
/** This long before the verdict a fresh TCP connection to the relay's address is tried, and given until half a sweep before it. */
export const RELAY_WATCH_PROBE_LEAD_MS = 2 * second

/** Whether a fresh TCP connection to host:port opens before `signal`: the relay answers at that address. */
export type TcpProbe = (host: string, port: number, signal: AbortSignal) => Promise<boolean>

/** A TCP connect, closed at once: no libp2p handshake, nothing sent. */
export const tcpProbe: TcpProbe = async (host, port, signal) => await new Promise(resolve => {
  const socket = connect({ host, port })
  const done = (answered: boolean): void => {
    signal.removeEventListener('abort', aborted)
    socket.destroy()
    resolve(answered)
  }
  const aborted = (): void => { done(false) }
  socket.once('connect', () => { done(true) })
  // refused counts as no answer: a dial of the address would fail as surely
  socket.once('error', () => { done(false) })
  if (signal.aborted) done(false)
  else signal.addEventListener('abort', aborted, { once: true })
})

export interface RelayWatchInit {
  /** @default RELAY_WATCH_PING_AFTER_MS */
  pingAfterMs?: number
  /** @default RELAY_WATCH_SUSPECT_AFTER_MS */
  suspectAfterMs?: number
  /** @default RELAY_WATCH_SILENT_AFTER_MS */
  silentAfterMs?: number
  /** @default RELAY_WATCH_SWEEP_INTERVAL_MS */
  sweepIntervalMs?: number
  /** @default RELAY_WATCH_DEAF_AFTER_MS */
  deafAfterMs?: number
  /** @default RELAY_WATCH_PROBE_LEAD_MS */
  probeLeadMs?: number
  /** How the relay's address is tried afresh (a TCP connect; a test gives its own). */
  probe?: TcpProbe
  /** How a relay is pinged (libp2p's ping protocol over the connection; a test gives its own). */
  ping?: (connection: Connection, options: AbortOptions) => Promise<void>
  /** Relays watched besides those the node holds a reservation on (those found silent). */
  alsoWatch?: (relay: string) => boolean
  /** Told of each relay ended for silence while the node's line worked: its address is not dialled for a while. */
  gonePeers?: Pick<GonePeers, 'pause'>
}

export interface RelayWatchComponents {
  addressManager: { getAddresses: () => Multiaddr[] }
  connectionManager: { getConnections: () => Connection[] }
  logger: ComponentLogger
}

/** A watched connection's quiet stretch, from the sweep that found it suspect. */
interface Suspect {
  since: number
  /** Whether no control peer had answered for deafAfterMs at some sweep since. */
  deaf: boolean
  /** The fresh connection's outcome: undefined until tried and answered. */
  probe?: 'trying' | 'answered' | 'no answer'
}

export class RelayWatch implements Startable {
  private readonly log: Logger
  private readonly pingAfterMs: number
  private readonly suspectAfterMs: number
  private readonly silentAfterMs: number
  private readonly sweepIntervalMs: number
  private readonly deafAfterMs: number
  private readonly probeLeadMs: number
  private readonly probe: TcpProbe
  private readonly ping: (connection: Connection, options: AbortOptions) => Promise<void>
  private readonly alsoWatch?: (relay: string) => boolean
  private readonly gonePeers?: Pick<GonePeers, 'pause'>
  private readonly clock: SweepClock
  /** Connections (by id) with a ping under way: one at a time each. */
  private readonly pinging = new Set<string>()
  /** Watched connections (by id) in a suspect quiet stretch. */
  private readonly suspects = new Map<string, Suspect>()
  /**
   * Connections (by id) whose last ping of ours was answered, and the time
   * of the sweep that sent it: a control counts by its answers to us, not
   * by whatever it sends (a line whose outgoing half failed still brings
   * gossip and the peers' own pings in).
   */
  private readonly answered = new Map<string, number>()
  private stopping = new AbortController()
  private timer?: NodeJS.Timeout
  /** Relay connections ended for silence since start. */
  ended = 0
  /** Of those, the ones whose address was paused (the node's line worked). */
  paused = 0

  constructor (private readonly components: RelayWatchComponents, init: RelayWatchInit = {}) {
    this.log = components.logger.forComponent('spareband:relay-watch')
    this.pingAfterMs = init.pingAfterMs ?? RELAY_WATCH_PING_AFTER_MS
    this.suspectAfterMs = init.suspectAfterMs ?? RELAY_WATCH_SUSPECT_AFTER_MS
    this.silentAfterMs = init.silentAfterMs ?? RELAY_WATCH_SILENT_AFTER_MS
    this.sweepIntervalMs = init.sweepIntervalMs ?? RELAY_WATCH_SWEEP_INTERVAL_MS
    this.deafAfterMs = init.deafAfterMs ?? RELAY_WATCH_DEAF_AFTER_MS
    this.probeLeadMs = init.probeLeadMs ?? RELAY_WATCH_PROBE_LEAD_MS
    this.probe = init.probe ?? tcpProbe
    this.ping = init.ping ?? pingOver
    this.alsoWatch = init.alsoWatch
    this.gonePeers = init.gonePeers
    this.clock = new SweepClock(this.sweepIntervalMs)
  }

  start (): void {
    this.stopping = new AbortController()
    this.clock.start()
    this.timer = setInterval(() => { this.sweep() }, this.sweepIntervalMs)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.stopping.abort()
    this.suspects.clear()
  }

  /** The relays this node holds a reservation on: those of its own circuit addresses. */
  private reservedRelays (): Set<string> {
    const relays = new Set<string>()
    for (const addr of this.components.addressManager.getAddresses()) {
      const relay = relayOf(addr)
      if (relay != null) relays.add(relay)
    }
    return relays
  }

  sweep (now = performance.now()): void {
    if (!this.clock.onTime(now)) {
      this.log('sweep came late (a stalled event loop): silence is counted from now')
      // the stall may have hidden what came in: no stretch under way is judged deaf or not by it
      this.suspects.clear()
      return
    }
    const reserved = this.reservedRelays()
    if (reserved.size === 0 && this.alsoWatch == null) return
    const connections = this.components.connectionManager.getConnections()
    const watched = new Set<string>()
    for (const connection of connections) {
      // a relay is watched over its direct connections: the reservation is held over one, DHT queries use them
      if (!direct(connection)) continue
      const peer = connection.remotePeer.toString()
      if (!reserved.has(peer) && this.alsoWatch?.(peer) !== true) continue
      const heard = lastHeard(connection)
      if (heard == null) continue
      watched.add(connection.id)
      const silentMs = this.clock.silence(heard, now)
      if (silentMs < this.pingAfterMs) {
        this.suspects.delete(connection.id)
        continue
      }
      // a relay watched only late in its silence (marked silent on the way) has its fresh connection tried first, for up to probeLeadMs
      const probe = this.suspects.get(connection.id)?.probe
      const settling = connection.direction === 'outbound' && silentMs < this.silentAfterMs + this.probeLeadMs && (probe == null || probe === 'trying')
      if (silentMs >= this.silentAfterMs && !settling) {
        this.end(connection, connections, heard, silentMs, now, reserved.has(peer))
        continue
      }
      this.pingOnce(connection)
      if (silentMs >= this.suspectAfterMs) this.suspect(connection, connections, heard, silentMs, now)
    }
    for (const id of this.suspects.keys()) if (!watched.has(id)) this.suspects.delete(id)
    if (this.answered.size > 0) {
      const open = new Set(connections.map(c => c.id))
      for (const id of this.answered.keys()) if (!open.has(id)) this.answered.delete(id)
    }
  }

  /** The verdict on a relay connection silent past silentAfterMs: ended, and its address paused when the node's line worked. */
  private end (connection: Connection, connections: readonly Connection[], heard: number, silentMs: number, now: number, reserved: boolean): void {
    this.ended++
    const pause = connection.direction === 'outbound' && this.mayPause(connection, connections, heard, now)
    this.suspects.delete(connection.id)
    if (pause) {
      this.paused++
      this.gonePeers?.pause(connection.remotePeer.toString(), connection.remoteAddr, now)
    }
    this.log('nothing heard for %d s from relay %p (%s): ending the connection%s', Math.round(silentMs / 1000), connection.remotePeer, reserved ? 'this node is reached through it' : 'found silent', pause ? `; ${connection.remoteAddr.toString()} is not dialled for a while` : '')
    connection.abort(new SilentPeerError(`nothing heard from the relay for ${Math.round(silentMs / 1000)} s`))
  }

  /** A relay connection quiet past suspectAfterMs: a control peer answers for the node's line every sweep until the verdict, and the relay's address is tried afresh before it. */
  private suspect (connection: Connection, connections: readonly Connection[], heard: number, silentMs: number, now: number): void {
    let suspect = this.suspects.get(connection.id)
    if (suspect == null) {
      suspect = { since: now, deaf: false }
      this.suspects.set(connection.id, suspect)
    } else if (now - suspect.since >= this.sweepIntervalMs / 2 && now - (this.lastAnswerOfControls(connections, connection, heard) ?? -Infinity) >= this.deafAfterMs) {
      // the first control ping has had its sweep to come back
      suspect.deaf = true
    }
    const control = controlFor(connections, connection, heard, this.pinging)
    if (control != null) this.pingOnce(control, now)
    if (silentMs >= this.silentAfterMs - this.probeLeadMs && suspect.probe == null) this.probeAfresh(connection, suspect)
  }

  /** When a control connection last answered a ping of ours (the sending sweep's time), or undefined. */
  private lastAnswerOfControls (connections: readonly Connection[], watched: Connection, since: number): number | undefined {
    let latest: number | undefined
    for (const c of controls(connections, watched, since)) {
      const at = this.answered.get(c.id)
      if (at != null && (latest == null || at > latest)) latest = at
    }
    return latest
  }

  /**
   * Whether the relay's silence was its own: the controls never went
   * unanswered for deafAfterMs during the suspect stretch, one answered
   * within the last sweep and a half, a fresh connection to the relay's
   * address found no answer, and the relay says nothing on another
   * connection.
   */
  private mayPause (connection: Connection, connections: readonly Connection[], heard: number, now: number): boolean {
    const suspect = this.suspects.get(connection.id)
    // the fresh connection is what settles a stretch watched only late, too
    if (suspect == null || suspect.deaf || suspect.probe !== 'no answer') return false
    const peer = connection.remotePeer.toString()
    if (connections.some(c => c !== connection && c.status === 'open' && c.remotePeer.toString() === peer && now - (lastHeard(c) ?? -Infinity) < this.silentAfterMs)) return false
    return now - (this.lastAnswerOfControls(connections, connection, heard) ?? -Infinity) < 1.5 * this.sweepIntervalMs
  }

  /** Tries a fresh TCP connection to the relay's address, if the node dialled it there over TCP; the verdict reads the outcome. */
  private probeAfresh (connection: Connection, suspect: Suspect): void {
    const target = connection.direction === 'outbound' ? tcpTarget(connection.remoteAddr) : undefined
    if (target == null) {
      suspect.probe = 'answered'
      return
    }
    suspect.probe = 'trying'
    // done before the verdict's sweep, which comes probeLeadMs after this one
    const signal = AbortSignal.any([AbortSignal.timeout(this.probeLeadMs - this.sweepIntervalMs / 2), this.stopping.signal])
    this.probe(target.host, target.port, signal)
      .then(answered => { suspect.probe = answered ? 'answered' : 'no answer' }, () => { suspect.probe = 'answered' })
  }

  /** One ping at a time on a connection. The answer, if any, is heard on its clock; a failure says nothing the silence will not. */
  private pingOnce (connection: Connection, now = performance.now()): void {
    if (this.pinging.has(connection.id)) return
    this.pinging.add(connection.id)
    this.ping(connection, { signal: AbortSignal.any([AbortSignal.timeout(this.silentAfterMs), this.stopping.signal]) })
      .then(() => { this.answered.set(connection.id, now) }, err => { this.log('ping of %p failed - %e', connection.remotePeer, err) })
      .finally(() => { this.pinging.delete(connection.id) })
  }
}

function direct (c: Connection): boolean {
  return c.status === 'open' && c.limits == null && relayOf(c.remoteAddr) == null
}

/**
 * The connections that may answer for the node's line while `watched` is
 * quiet since `since` (performance.now() ms): direct, to other peers, open
 * before `since`, with a hearing clock, and on a public address when the
 * watched one's is public.
 */
function controls (connections: readonly Connection[], watched: Connection, since: number): Connection[] {
  const peer = watched.remotePeer.toString()
  const publicOnly = !isPrivate(watched.remoteAddr)
  return connections.filter(c => c !== watched && direct(c) && c.remotePeer.toString() !== peer && lastHeard(c) != null &&
    // opened before the quiet began (on the hearing clock: a wall clock stepped by NTP, or a sleep, would age a new one)
    (openedAt(c) ?? Infinity) < since &&
    (!publicOnly || !isPrivate(c.remoteAddr)))
}

/** The control connection heard from last, among those without a ping under way: the likeliest to answer at once. */
function controlFor (connections: readonly Connection[], watched: Connection, since: number, pinging: ReadonlySet<string>): Connection | undefined {
  let best: Connection | undefined
  for (const c of controls(connections, watched, since)) {
    if (pinging.has(c.id)) continue
    if (best == null || lastHeard(c)! > lastHeard(best)!) best = c
  }
  return best
}

/** The host and port of an /ip4 or /ip6 TCP address; undefined for any other. */
function tcpTarget (addr: Multiaddr): { host: string, port: number } | undefined {
  const [ip, tcp] = addr.getComponents()
  if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || tcp?.name !== 'tcp' || ip.value == null || tcp.value == null) return undefined
  return { host: ip.value, port: Number(tcp.value) }
}

export function relayWatch (init: RelayWatchInit = {}): (components: RelayWatchComponents) => RelayWatch {
  return components => new RelayWatch(components, init)
}
