/**
 * The exit: accepts `/spareband/tunnel/1.0.0` streams from consumers and
 * carries them to their targets, under the operator's rules.
 *
 * Order of checks for a new tunnel, cheapest and least revealing first:
 * paused -> schedule -> quota -> concurrency -> credit (accounting seam) ->
 * policy on the host as sent -> DNS at the exit -> policy on every resolved
 * address -> dial exactly the addresses that passed, in order, until one
 * answers. Dialing the checked addresses (never the name again) is what
 * keeps DNS rebinding from getting round the policy.
 */

import { connect } from 'node:net'
import { readFileSync } from 'node:fs'
import { lookup } from 'node:dns/promises'
import { networkInterfaces } from 'node:os'
import { TypedEventEmitter } from 'main-event'
import { raceAbort } from '../race-abort.ts'
import { TUNNEL_PROTOCOL, minute, second } from '../constants.ts'
import { ExitPolicy, parseTargetHost } from './exit-policy.ts'
import { BULK_READ_BYTES, bulkReads } from './bulk-read.ts'
import { pipeSocketStream } from './pipe.ts'
import { markLive } from './live-tunnels.ts'
import { QuotaTracker } from './quota.ts'
import { writeJsonAtomically } from './json-file.ts'
import { isWithinSchedule, outsideScheduleMessage, parseSchedule } from './schedule.ts'
import { TokenBucket, consumeAll } from './shaping.ts'
import { TunnelSlots } from './tunnel-slots.ts'
import { WaitingStreams } from './waiting-streams.ts'
import { EXIT_STOPPING_MESSAGE, MAX_OUTBOUND_TUNNELS, TunnelResponse, NoRequestError, TunnelStatus, UnusedStreamError, closeQuietly, closeWithin, decodeTunnelRequest, readFrame, sendFrame } from './tunnel-protocol.ts'
import type { ExitPolicyInit } from './exit-policy.ts'
import type { ExitAccounting } from './accounting-hooks.ts'
import type { Schedule } from './schedule.ts'
import type { ReleaseSlot } from './tunnel-slots.ts'
import type { ComponentLogger, Connection, Libp2pEvents, Logger, PeerId, Startable, Stream } from '@libp2p/interface'
import type { AddressManager, Registrar } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { TypedEventTarget } from 'main-event'
import type { Socket } from 'node:net'

export const DEFAULT_REQUEST_TIMEOUT = 10 * second
/** How long a tunnel stream may idle before its request: consumers keep warm streams for up to 20 s. */
export const WARM_STREAM_WAIT_MS = 60 * second
export const DEFAULT_CONNECT_TIMEOUT = 10 * second
/** The least time one of several addresses of a name gets to connect: a SYN and two retries. */
export const MIN_CONNECT_ATTEMPT = 3 * second
export const DEFAULT_DNS_TIMEOUT = 5 * second
export const DEFAULT_IDLE_TIMEOUT = 300 * second
export const DEFAULT_MAX_TUNNELS = 1024
export const DEFAULT_MAX_TUNNELS_PER_CONSUMER = 256
/** How often open tunnels are checked against the schedule. */
export const SCHEDULE_CHECK_INTERVAL = 10 * second
/**
 * How often the exit re-reads its own addresses: interfaces come and go
 * (DHCP, VPNs, a laptop changing networks) without any libp2p event.
 */
export const OWN_ADDRESS_REFRESH_INTERVAL = minute
/** How long a waiting stream let go (WaitingStreams), once answered, has to close before it is reset. */
export const LET_GO_GRACE_MS = 500

/** Why a set-up under way ended when the exit stopped: its consumer is told BUSY. */
export class ExitStoppingError extends Error {
  static name = 'ExitStoppingError'
  constructor (message = EXIT_STOPPING_MESSAGE) {
    super(message)
    this.name = 'ExitStoppingError'
  }
}

/** The tunnel stream closed (the consumer gave up) while its target was being looked up or dialed. */
export class StreamGoneError extends Error {
  static name = 'StreamGoneError'
  constructor (message = 'the tunnel stream closed before the target answered') {
    super(message)
    this.name = 'StreamGoneError'
  }
}

export type Resolver = (host: string) => Promise<Array<{ address: string, family: number }>>

export interface TunnelExitInit {
  policy: ExitPolicyInit
  /** @default 1024 */
  maxTunnels?: number
  /** @default 256 */
  maxTunnelsPerConsumer?: number
  /** Bytes per second from targets to consumers, all tunnels together; 0 = unlimited. */
  downloadRate?: number
  /** Bytes per second from consumers to targets; 0 = unlimited. */
  uploadRate?: number
  /** Bytes per second per consumer, each direction; 0 = unlimited. */
  perConsumerRate?: number
  dailyQuotaBytes?: number
  monthlyQuotaBytes?: number
  /** Where quota counters persist. */
  quotaFile?: string
  /** Where the operator's pause persists, so it survives a restart; none = in memory only. */
  stateFile?: string
  /** Share schedule text, see schedule.ts. @default "always" */
  schedule?: string
  /** How often open tunnels are checked against the schedule. @default SCHEDULE_CHECK_INTERVAL (10 s) */
  scheduleCheckMs?: number
  idleTimeoutMs?: number
  connectTimeoutMs?: number
  requestTimeoutMs?: number
  /** How long a stream may idle before its request. @default 60 s */
  warmStreamWaitMs?: number
  /** DNS at the exit. @default node:dns lookup, all addresses */
  resolve?: Resolver
  /** Wall clock for schedule and quota days. */
  now?: () => Date
  /** Gating and metering by accounting (credit, unsigned bytes). */
  accounting?: ExitAccounting
  /** This machine's interface addresses, refused as targets. @default every address os.networkInterfaces() reports */
  interfaceAddresses?: () => string[]
  /** How often the own addresses are read again. @default 1 minute */
  ownAddressRefreshMs?: number
}

export interface TunnelExitComponents {
  registrar: Registrar
  logger: ComponentLogger
  /** The node's addresses as others should dial it: announced, observed and confirmed, mapped. */
  addressManager: Pick<AddressManager, 'getAddresses'>
  /** For 'self:peer:update', sent when those addresses change. */
  events: TypedEventTarget<Libp2pEvents>
}

export interface ExitStats {
  enabled: true
  paused: boolean
  /** When the operator paused the exit (ISO 8601), while it is paused. */
  pausedSince: string | null
  /**
   * Why the last pause or resume could not be saved in exit-state.json
   * (then it holds until the node stops, and a restart goes back to the
   * state saved before); null once one is saved.
   */
  stateNotSaved: string | null
  bytesIn: number
  bytesOut: number
  tunnelsOpen: number
  /**
   * Tunnels admitted and not open yet: their target is being looked up or
   * connected to (or the consumer is being told OK). With tunnelsOpen, what
   * maxTunnels bounds.
   */
  tunnelsConnecting: number
  tunnelsTotal: number
  /** Tunnel streams open and waiting for their request (warm streams, set-ups on their way). */
  streamsWaiting: number
  /** Waiting streams let go (answered RATE_LIMITED or BUSY, and closed) because a consumer had as many waiting as it may have tunnels, or all had as many as the exit takes (WaitingStreams); the name is from when they were reset. */
  streamsWaitingReset: number
  denied: number
  deniedByStatus: Record<string, number>
  policy: string
  /**
   * This machine's addresses as the exit refuses them: its interfaces, the
   * addresses libp2p announces (`--announce`, observed and confirmed ones,
   * what is behind announced names). Empty when private targets are allowed.
   */
  ownAddresses: string[]
  quota: ReturnType<QuotaTracker['usage']>
  /** Which data quota is used up, if one is. */
  quotaExceeded: string | null
  /** Why the quota counters could not be saved at the last try, and since when (ISO 8601); null once a save works. */
  quotaSaveError: { since: string, error: string } | null
  withinSchedule: boolean
  /** The share schedule as configured (exit.schedule), e.g. "mon-fri 00:00-07:00, sat-sun all"; "always" by default. */
  schedule: string
  /** The operator's limits as this exit applies them; 0 = none. */
  limits: {
    maxTunnels: number
    maxTunnelsPerConsumer: number
    uploadBytesPerSecond: number
    downloadBytesPerSecond: number
    perConsumerBytesPerSecond: number
    idleTimeoutSeconds: number
  }
}

export interface TunnelInfo {
  consumer: string
  sessionId: string
  target: string
  address: string
  bytesIn: number
  bytesOut: number
}

export interface ExitEvents {
  'exit:tunnel:open': CustomEvent<TunnelInfo>
  'exit:tunnel:close': CustomEvent<TunnelInfo & { error?: string }>
  'exit:tunnel:denied': CustomEvent<{ consumer: string, status: TunnelStatus, message: string }>
  /**
   * The exit stopped or began taking new tunnels, or stops for another reason
   * now: paused or resumed, its share schedule closed or opened, a data
   * quota used up or renewed. Its capacity ad should say so at once.
   */
  'exit:offer:change': CustomEvent<OfferChange>
}

interface OpenTunnel {
  consumer: string
  controller: AbortController
}

type Refusal = { status: TunnelStatus, message: string }

/** Why an exit takes no new tunnels from anyone, most lasting first (a pause outlives a schedule's window). */
export type ExitClosedReason = 'paused' | 'outside-schedule' | 'daily-quota' | 'monthly-quota'

export interface OfferChange {
  paused: boolean
  /** Why it takes no new tunnels now; null when it takes them. */
  closed: ExitClosedReason | null
  /** The same before the change. */
  was: ExitClosedReason | null
}

export class TunnelExit extends TypedEventEmitter<ExitEvents> implements Startable {
  readonly [Symbol.toStringTag] = 'spareband:exit'
  private readonly log: Logger
  private readonly policy: ExitPolicy
  private readonly quota: QuotaTracker
  private quotaSaveError?: { since: string, error: string }
  private readonly schedule: Schedule
  private readonly down?: TokenBucket
  private readonly up?: TokenBucket
  private readonly perConsumer = new Map<string, { up: TokenBucket, down: TokenBucket }>()
  private readonly open = new Set<OpenTunnel>()
  /** Tunnels admitted and not ended, set-ups under way included: what the tunnel limits count. */
  private readonly slots = new TunnelSlots()
  /** Set-ups under way (DNS, connect to the target); each aborts when its stream goes. */
  private readonly connecting = new Set<AbortController>()
  /** Inbound streams whose request has not come yet (warm streams), within limits of their own: stop() closes them. */
  private readonly awaitingRequest: WaitingStreams
  private readonly resolve: Resolver
  private readonly now: () => Date
  private scheduleTimer?: NodeJS.Timeout
  private flushTimer?: NodeJS.Timeout
  private ownAddressTimer?: NodeJS.Timeout
  /** What the names among the node's own addresses resolved to when last looked up. */
  private announcedNames = new Map<string, string[]>()
  private resolvingNames?: Promise<void>
  private running = false
  private paused = false
  private pausedSince?: Date
  /** Why the pause or resume last asked for could not be saved, until one is. */
  private stateNotSaved?: string
  /** closedReason() as last announced in 'exit:offer:change'. */
  private closed: ExitClosedReason | null = null
  private stats = { bytesIn: 0, bytesOut: 0, tunnelsTotal: 0, denied: 0, deniedByStatus: {} as Record<string, number> }

  constructor (private readonly components: TunnelExitComponents, private readonly init: TunnelExitInit) {
    super()
    this.log = components.logger.forComponent('spareband:relay:exit')
    this.policy = new ExitPolicy(init.policy)
    // the interfaces at once, before any tunnel can arrive; the node's announced addresses once libp2p has them
    this.refreshOwnAddresses(false)
    init.accounting?.setCutOff?.((consumer, reason) => {
      const closed = this.abortTunnels(new Error(reason), consumer.toString())
      // its clients see resets mid-transfer: the operator's log says why (as for a tunnel refused)
      if (closed > 0) this.safeDispatchEvent('exit:tunnel:denied', { detail: { consumer: consumer.toString(), status: TunnelStatus.INSUFFICIENT_CREDIT, message: `closed its ${closed} open tunnel${closed === 1 ? '' : 's'}: ${reason}` } })
    })
    this.now = init.now ?? (() => new Date())
    this.awaitingRequest = new WaitingStreams({
      perConsumer: init.maxTunnelsPerConsumer ?? DEFAULT_MAX_TUNNELS_PER_CONSUMER,
      total: init.maxTunnels ?? DEFAULT_MAX_TUNNELS
    }, async (stream, over) => {
      // answered as the request would be at the limit, so its consumer waits (RATE_LIMITED) or asks another exit (BUSY);
      // a short grace: a stream let go still buffers what its peer sends until it closes
      await this.answerAndClose(stream, over === 'consumer' ? TunnelStatus.RATE_LIMITED : TunnelStatus.BUSY, over === 'consumer' ? 'too many tunnel streams from this consumer waiting for their request' : 'exit has as many tunnel streams waiting for their request as it takes tunnels', LET_GO_GRACE_MS)
    })
    this.quota = new QuotaTracker({ dailyBytes: init.dailyQuotaBytes ?? 0, monthlyBytes: init.monthlyQuotaBytes ?? 0, file: init.quotaFile, now: this.now })
    const saved = readExitState(init.stateFile)
    if (saved.paused) {
      this.paused = true
      this.pausedSince = saved.pausedSince
    }
    this.schedule = parseSchedule(init.schedule ?? 'always')
    if ((init.downloadRate ?? 0) > 0) this.down = new TokenBucket({ rate: init.downloadRate! })
    if ((init.uploadRate ?? 0) > 0) this.up = new TokenBucket({ rate: init.uploadRate! })
    this.resolve = init.resolve ?? (async host => lookup(host, { all: true, verbatim: true }))
  }

  async start (): Promise<void> {
    if (this.running) return
    const maxTunnels = this.init.maxTunnels ?? DEFAULT_MAX_TUNNELS
    await this.components.registrar.handle(TUNNEL_PROTOCOL, (stream, connection) => {
      this.onStream(stream, connection).catch(err => {
        this.log.error('tunnel handler failed - %e', err)
        stream.abort(err)
      })
    }, {
      // the js-libp2p default of 32 inbound streams per connection would reset most concurrent tunnels
      maxInboundStreams: maxTunnels + 16,
      // libp2p takes the handler's outbound limit over a dial's: without this, this node's own
      // proxies could open only 64 tunnels to any one exit (the default), the rest failing BUSY
      maxOutboundStreams: MAX_OUTBOUND_TUNNELS,
      runOnLimitedConnection: true
    })
    this.closed = this.closedReason()
    // the schedule's windows and the quotas' days turn with the clock: both are looked at on this timer
    this.scheduleTimer = setInterval(() => { this.enforceSchedule(); this.noteOfferChange() }, this.init.scheduleCheckMs ?? SCHEDULE_CHECK_INTERVAL)
    this.scheduleTimer.unref()
    this.flushTimer = setInterval(() => this.flushQuota(), 5 * second)
    this.flushTimer.unref()
    this.components.events.addEventListener('self:peer:update', this.onSelfUpdate)
    this.ownAddressTimer = setInterval(() => this.refreshOwnAddresses(), this.init.ownAddressRefreshMs ?? OWN_ADDRESS_REFRESH_INTERVAL)
    this.ownAddressTimer.unref()
    this.running = true
    this.log('exit started: %s', this.policy.describe())
    if (this.paused) this.log('exit paused by its operator since %s: no new tunnels until it is resumed', this.pausedSince?.toISOString() ?? 'an earlier run')
  }

  /** Transports listen by now: their addresses, and announced ones, join the refused set. */
  afterStart (): void {
    this.refreshOwnAddresses()
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    clearInterval(this.scheduleTimer)
    clearInterval(this.flushTimer)
    clearInterval(this.ownAddressTimer)
    this.components.events.removeEventListener('self:peer:update', this.onSelfUpdate)
    await this.components.registrar.unhandle(TUNNEL_PROTOCOL)
    this.abortTunnels(new Error('exit stopping'))
    for (const c of this.connecting) c.abort(new ExitStoppingError())
    // streams opened ahead of need (warm): a request on one now would open a tunnel after the stop
    for (const s of this.awaitingRequest.streams()) closeQuietly(s)
    this.awaitingRequest.clear()
    this.flushQuota()
  }

  /**
   * Stops taking new tunnels (open ones carry on) until resume(), across
   * restarts: the state is saved in `stateFile`. When it cannot be, the
   * exit is paused all the same, until it stops, and status() says why
   * (`stateNotSaved`, and the node's warnings): a pause that took effect is
   * no failure to its caller.
   */
  pause (): void {
    const was = this.paused
    if (!was) this.pausedSince = this.now()
    this.paused = true
    // saved before it is told: what hears of it (the start log, status) says whether it lasts past a restart
    this.saveState()
    if (!was) this.noteOfferChange()
  }

  /** Takes new tunnels again, now and after a restart (unless the state cannot be saved: see pause()). */
  resume (): void {
    this.paused = false
    this.pausedSince = undefined
    this.saveState()
    this.noteOfferChange()
  }

  private saveState (): void {
    const file = this.init.stateFile
    if (file == null) return
    const state: ExitState = { paused: this.paused, pausedSince: this.pausedSince }
    try {
      writeExitState(file, state)
      this.stateNotSaved = undefined
    } catch (err: any) {
      this.log.error('could not save the exit state in %s - %e', file, err)
      this.stateNotSaved = `${file} could not be written (${err.message as string})`
    }
  }

  get tunnelsOpen (): number { return this.open.size }

  private readonly onSelfUpdate = (): void => { this.refreshOwnAddresses() }

  /**
   * The exit's own addresses, refused as targets so consumers cannot reach
   * this machine: a NATed exit's public address (announced, or observed by
   * peers and confirmed by autonat) would otherwise lead, through hairpin
   * NAT, to the operator's router and whatever it forwards. Read from the
   * interfaces and libp2p's address manager (what getMultiaddrs() reports)
   * now, again on 'self:peer:update' and every OWN_ADDRESS_REFRESH_INTERVAL;
   * names among them (`--announce /dns4/home.example.org/...`) are resolved,
   * and the addresses they had last time count until the answer is in.
   * A local testnet (private targets allowed) has its targets on this
   * machine, so there this rule is lifted with the others.
   */
  private refreshOwnAddresses (withNode = true): void {
    if (this.init.policy.allowPrivateTargets === true) return
    const own = new Set((this.init.interfaceAddresses ?? localAddresses)())
    const names = new Set<string>()
    if (withNode) {
      for (const ma of this.components.addressManager.getAddresses()) {
        const host = hostOf(ma)
        if (host?.kind === 'ip') own.add(host.address)
        else if (host?.kind === 'name') names.add(host.name)
      }
    }
    for (const [name, addresses] of this.announcedNames) {
      if (!names.has(name)) this.announcedNames.delete(name)
      else for (const a of addresses) own.add(a)
    }
    const rejected = this.policy.setOwnAddresses(own)
    if (rejected.length > 0) this.log('not addresses, left out of the own addresses: %s', rejected.join(', '))
    if (names.size > 0 && this.resolvingNames == null) {
      this.resolvingNames = this.resolveOwnNames([...names]).finally(() => { this.resolvingNames = undefined })
    }
  }

  private async resolveOwnNames (names: string[]): Promise<void> {
    let changed = false
    for (const name of names) {
      try {
        const found = (await withTimeout(this.resolve(name), DEFAULT_DNS_TIMEOUT, 'DNS lookup timed out')).map(a => a.address)
        if (found.join() !== this.announcedNames.get(name)?.join()) changed = true
        this.announcedNames.set(name, found)
      } catch (err: any) {
        this.log('could not resolve %s, one of this node\'s own addresses - %e', name, err)
      }
    }
    if (changed) this.refreshOwnAddresses()
  }

  /**
   * What the exit would answer a tunnel to `address:port`, checked the way
   * a resolved address is checked, without dialing anything.
   */
  checkAddress (address: string, port: number): ReturnType<ExitPolicy['checkAddress']> {
    return this.policy.checkAddress(address, port)
  }

  status (): ExitStats {
    return {
      enabled: true,
      paused: this.paused,
      pausedSince: this.pausedSince?.toISOString() ?? null,
      stateNotSaved: this.stateNotSaved ?? null,
      bytesIn: this.stats.bytesIn,
      bytesOut: this.stats.bytesOut,
      tunnelsOpen: this.open.size,
      // every open tunnel holds a slot, and a set-up holds one until it opens or fails
      tunnelsConnecting: this.slots.size - this.open.size,
      tunnelsTotal: this.stats.tunnelsTotal,
      streamsWaiting: this.awaitingRequest.size,
      streamsWaitingReset: this.awaitingRequest.evictions,
      denied: this.stats.denied,
      deniedByStatus: { ...this.stats.deniedByStatus },
      policy: this.policy.describe(),
      ownAddresses: [...(this.init.policy.ownAddresses ?? []), ...this.policy.learnedOwn],
      quota: this.quota.usage(),
      quotaExceeded: this.quota.exceeded() ?? null,
      quotaSaveError: this.quotaSaveError != null ? { ...this.quotaSaveError } : null,
      withinSchedule: isWithinSchedule(this.schedule, this.now()),
      schedule: this.init.schedule ?? 'always',
      limits: {
        maxTunnels: this.init.maxTunnels ?? DEFAULT_MAX_TUNNELS,
        maxTunnelsPerConsumer: this.init.maxTunnelsPerConsumer ?? DEFAULT_MAX_TUNNELS_PER_CONSUMER,
        uploadBytesPerSecond: this.init.uploadRate ?? 0,
        downloadBytesPerSecond: this.init.downloadRate ?? 0,
        perConsumerBytesPerSecond: this.init.perConsumerRate ?? 0,
        idleTimeoutSeconds: (this.init.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT) / second
      }
    }
  }

  private flushQuota (): void {
    try {
      this.quota.flush()
      this.quotaSaveError = undefined
    } catch (err: any) {
      this.log.error('could not save exit usage counters - %e', err)
      // the debug log is off on most nodes: status() carries it to the operator's warnings
      this.quotaSaveError = { since: this.quotaSaveError?.since ?? this.now().toISOString(), error: err.message ?? String(err) }
    }
  }

  /** Aborts every open tunnel, or those of one consumer; how many. */
  private abortTunnels (reason: Error, consumer?: string): number {
    let n = 0
    for (const t of this.open) {
      if (consumer != null && t.consumer !== consumer) continue
      t.controller.abort(reason)
      n++
    }
    return n
  }

  private enforceSchedule (): void {
    if (this.open.size > 0 && !isWithinSchedule(this.schedule, this.now())) {
      this.log('share schedule window ended, closing %d tunnels', this.open.size)
      this.abortTunnels(new Error('outside the share schedule'))
    }
  }

  /** Why the exit takes no new tunnel from anyone now, if it does not; admission() refuses in the same order. */
  private closedReason (): ExitClosedReason | null {
    if (this.paused) return 'paused'
    if (!isWithinSchedule(this.schedule, this.now())) return 'outside-schedule'
    const period = this.quota.exceeded()
    return period == null ? null : `${period}-quota`
  }

  /** Announces a change of closedReason() since the last announcement, if there was one. */
  private noteOfferChange (): void {
    const closed = this.closedReason()
    if (closed === this.closed) return
    const was = this.closed
    this.closed = closed
    this.safeDispatchEvent('exit:offer:change', { detail: { paused: this.paused, closed, was } })
  }

  /** Why a new tunnel from `consumer` may not open now, if it may not. */
  private admission (consumer: PeerId): Refusal | undefined {
    if (this.paused) return { status: TunnelStatus.BUSY, message: 'exit paused by its operator' }
    if (!isWithinSchedule(this.schedule, this.now())) return { status: TunnelStatus.OUTSIDE_SCHEDULE, message: outsideScheduleMessage(this.schedule, this.now()) }
    const period = this.quota.exceeded()
    if (period != null) return { status: TunnelStatus.QUOTA_EXCEEDED, message: `exit's ${period} data quota is used up` }
    if (this.slots.size >= (this.init.maxTunnels ?? DEFAULT_MAX_TUNNELS)) return { status: TunnelStatus.BUSY, message: 'exit at its tunnel limit' }
    if (this.slots.of(consumer.toString()) >= (this.init.maxTunnelsPerConsumer ?? DEFAULT_MAX_TUNNELS_PER_CONSUMER)) return { status: TunnelStatus.RATE_LIMITED, message: 'too many open tunnels from this consumer' }
    return undefined
  }

  private async respond (stream: Stream, status: TunnelStatus, message: string): Promise<void> {
    await sendFrame(stream, TunnelResponse.encode({ status, message }))
  }

  private async deny (stream: Stream, consumer: string, status: TunnelStatus, message: string): Promise<void> {
    this.stats.denied++
    this.stats.deniedByStatus[status] = (this.stats.deniedByStatus[status] ?? 0) + 1
    this.log('denied tunnel from %s: %s %s', consumer, status, message)
    this.safeDispatchEvent('exit:tunnel:denied', { detail: { consumer, status, message } })
    await this.answerAndClose(stream, status, message)
  }

  private async answerAndClose (stream: Stream, status: TunnelStatus, message: string, graceMs = 2 * second): Promise<void> {
    try {
      await this.respond(stream, status, message)
    } catch (err: any) {
      stream.abort(err)
      return
    }
    // a consumer reads the answer and resets; one that keeps its side open gets a reset after the grace
    await closeWithin(stream, graceMs)
  }

  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    const consumer = connection.remotePeer
    const consumerId = consumer.toString()
    let request: ReturnType<typeof decodeTunnelRequest>
    let rest
    this.awaitingRequest.add(stream, consumerId)
    try {
      // a consumer may open streams ahead of need (warm streams): the request
      // can come much later than the stream, but then must come whole
      const r = await readFrame(stream, { firstByteTimeoutMs: this.init.warmStreamWaitMs ?? WARM_STREAM_WAIT_MS, timeoutMs: this.init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT })
      rest = r.rest
      request = decodeTunnelRequest(r.frame)
    } catch (err: any) {
      // waits no more: not let go (and answered a second time) while its refusal below is sent
      this.awaitingRequest.delete(stream)
      if (err instanceof UnusedStreamError || !this.running || this.awaitingRequest.wasEvicted(stream)) {
        // a warm stream its consumer did not need (or closed by stop(), or
        // let go for being over the limit of waiting streams, and answered): no tunnel, no refusal
        closeQuietly(stream)
        return
      }
      if (err instanceof NoRequestError) {
        // a warm stream whose consumer went quiet without closing it: told why, but no refusal
        // counted or logged (the operator saw five after every outage of a consumer's line)
        await this.answerAndClose(stream, TunnelStatus.BAD_REQUEST, err.message)
        return
      }
      await this.deny(stream, consumerId, TunnelStatus.BAD_REQUEST, err.message)
      return
    } finally {
      this.awaitingRequest.delete(stream)
    }
    // let go for being over the limit of waiting streams after its request came (another stream's arrival ran in between): answered already
    if (this.awaitingRequest.wasEvicted(stream)) return
    // stopped while the request was on its way: the consumer tries another exit
    if (!this.running) return this.deny(stream, consumerId, TunnelStatus.BUSY, EXIT_STOPPING_MESSAGE)

    const refusal = this.admission(consumer) ?? this.init.accounting?.admit(consumer, request.sessionId)
    if (refusal != null) return this.deny(stream, consumerId, refusal.status, refusal.message)
    // counted against the limits from here, with no await between the check
    // and the take: a burst whose set-ups are all under way at once is
    // counted as it comes in. Given back when the tunnel ends, or before a
    // refusal is sent; the finally catches every other way out
    const release = this.slots.take(consumerId)
    // a tunnel from here on: a close of its connection waits for it (node/tunnel-close-guard.ts)
    markLive(stream)
    try {
      await this.setUpAndCarry(stream, consumer, request, rest, release)
    } finally {
      release()
      // its last tunnel or set-up is over (whichever way it ended): the consumer's rate buckets go
      if (this.slots.of(consumerId) === 0) this.perConsumer.delete(consumerId)
    }
  }

  private async setUpAndCarry (stream: Stream, consumer: PeerId, request: ReturnType<typeof decodeTunnelRequest>, rest: any, release: ReleaseSlot): Promise<void> {
    const consumerId = consumer.toString()
    const check = this.policy.checkTarget(request.host, request.port)
    if (!check.allowed) {
      release()
      return this.deny(stream, consumerId, TunnelStatus.POLICY_DENIED, withPrivateHint(check))
    }

    // the consumer may give up while the target is looked up and dialed (its
    // client left): the stream's close ends the set-up, so no connection to
    // the target is made for no one, nor kept until the connect timeout
    const setup = new AbortController()
    const onGone = (): void => { setup.abort(new StreamGoneError()) }
    if (stream.status !== 'open') onGone()
    else stream.addEventListener('close', onGone, { once: true })
    this.connecting.add(setup)
    let outcome: Awaited<ReturnType<TunnelExit['connectTarget']>>
    try {
      outcome = await this.connectTarget(stream, consumerId, request, setup.signal)
    } finally {
      this.connecting.delete(setup)
      stream.removeEventListener('close', onGone)
    }
    if (outcome == null) return
    if ('refusal' in outcome) {
      release()
      return this.deny(stream, consumerId, outcome.refusal.status, outcome.refusal.message)
    }
    const { socket, address } = outcome

    try {
      await this.respond(stream, TunnelStatus.OK, '')
    } catch (err: any) {
      socket.destroy()
      stream.abort(err)
      return
    }
    await this.carry(stream, socket, consumer, request, address, rest, release)
  }

  /**
   * DNS at the exit, the policy on each address, then the connect: the
   * socket, or what to refuse the consumer, or undefined once the consumer
   * has gone (`signal`: then nothing is answered or counted as a refusal).
   * The caller answers, after it has given the tunnel's slot back.
   */
  private async connectTarget (stream: Stream, consumerId: string, request: { host: string, port: number }, signal: AbortSignal): Promise<{ socket: Socket, address: string } | { refusal: Refusal } | undefined> {
    const gone = (): { refusal: Refusal } | undefined => {
      // the consumer is still there: told, it tries another exit at once rather than wait for an answer
      if (signal.reason instanceof ExitStoppingError) return { refusal: { status: TunnelStatus.BUSY, message: EXIT_STOPPING_MESSAGE } }
      this.log('tunnel from %s to %s:%d given up by the consumer before the target answered', consumerId, request.host, request.port)
      return undefined
    }
    // DNS at the exit, so the consumer's resolver never sees the name
    const parsed = parseTargetHost(request.host)
    let candidates: string[]
    if (parsed.kind === 'ip') candidates = [parsed.address]
    else {
      try {
        // node:dns cannot cancel a lookup; the set-up stops waiting for it
        const found = await raceAbort(withTimeout(this.resolve(parsed.name), DEFAULT_DNS_TIMEOUT, 'DNS lookup timed out'), signal)
        candidates = found.map(a => a.address)
        if (candidates.length === 0) throw new Error('no addresses')
      } catch (err: any) {
        if (signal.aborted) return gone()
        return { refusal: { status: TunnelStatus.DNS_FAILED, message: `cannot resolve ${parsed.name}: ${err.code ?? err.message}` } }
      }
    }
    const allowed: string[] = []
    let firstReason = ''
    for (const a of candidates) {
      const c = this.policy.checkAddress(a, request.port)
      if (c.allowed) allowed.push(a)
      else if (firstReason === '') firstReason = withPrivateHint(c, parsed.kind === 'name' ? `${parsed.name} resolves to ${c.reason}` : c.reason)
    }
    if (allowed.length === 0) return { refusal: { status: TunnelStatus.POLICY_DENIED, message: firstReason } }

    try {
      const dialed = await dialInOrder(allowed, request.port, this.init.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT, signal)
      if (signal.aborted || stream.status !== 'open') {
        dialed.socket.destroy()
        return gone()
      }
      return dialed
    } catch (err: any) {
      if (signal.aborted) return gone()
      const status = err.code === 'ECONNREFUSED'
        ? TunnelStatus.CONNECT_REFUSED
        : err.code === 'ETIMEDOUT' ? TunnelStatus.TIMEOUT : TunnelStatus.UNREACHABLE
      const tried = allowed.length > 1 ? ` (tried ${allowed.length} addresses)` : ''
      return { refusal: { status, message: `${request.host}:${request.port}: ${err.code ?? err.message}${tried}` } }
    }
  }

  private consumerBuckets (consumer: string): { up: TokenBucket, down: TokenBucket } | undefined {
    const rate = this.init.perConsumerRate ?? 0
    if (rate <= 0) return undefined
    let b = this.perConsumer.get(consumer)
    if (b == null) {
      b = { up: new TokenBucket({ rate }), down: new TokenBucket({ rate }) }
      this.perConsumer.set(consumer, b)
    }
    return b
  }

  private async carry (stream: Stream, socket: Socket, consumerPeer: PeerId, request: { sessionId: string, host: string, port: number }, address: string, rest: any, release: ReleaseSlot): Promise<void> {
    const consumer = consumerPeer.toString()
    const accounting = this.init.accounting
    const tunnel: OpenTunnel = { consumer, controller: new AbortController() }
    this.open.add(tunnel)
    this.stats.tunnelsTotal++
    const info: TunnelInfo = { consumer, sessionId: request.sessionId, target: `${request.host}:${request.port}`, address, bytesIn: 0, bytesOut: 0 }
    this.safeDispatchEvent('exit:tunnel:open', { detail: info })
    const mine = this.consumerBuckets(consumer)
    const result = await pipeSocketStream(socket, stream, {
      readBytes: BULK_READ_BYTES,
      initial: rest,
      idleTimeoutMs: this.init.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT,
      signal: tunnel.controller.signal,
      beforeChunk: accounting?.gate == null ? undefined : (direction, _bytes, queued) => accounting.gate?.(consumerPeer, direction === 'toStream' ? queued : 0),
      onChunk: (direction, bytes, queued) => {
        this.quota.add(bytes)
        if (this.quota.needsFlush()) this.flushQuota()
        let wait: number
        let hold: Promise<void> | undefined
        if (direction === 'toStream') {
          // target -> consumer: the consumer's download
          this.stats.bytesOut += bytes
          info.bytesOut += bytes
          wait = consumeAll([this.down, mine?.down], bytes)
          hold = accounting?.meter(consumerPeer, request.sessionId, 'down', bytes, queued)
        } else {
          this.stats.bytesIn += bytes
          info.bytesIn += bytes
          wait = consumeAll([this.up, mine?.up], bytes)
          hold = accounting?.meter(consumerPeer, request.sessionId, 'up', bytes)
        }
        if (this.quota.exceeded() != null) {
          // said at once, so the ad stops drawing consumers and the operator's log tells why downloads broke off
          this.noteOfferChange()
          this.abortTunnels(new Error('data quota used up'))
        }
        // unsigned bytes over the threshold: hold until the consumer signs
        return hold ?? wait
      }
    })
    this.open.delete(tunnel)
    release()
    accounting?.tunnelEnded?.(consumerPeer, request.sessionId, info.bytesOut, result.error != null)
    this.log('tunnel %s -> %s closed: %d in, %d out%s', consumer, info.target, info.bytesIn, info.bytesOut, result.error != null ? ` (${result.error.message})` : '')
    this.safeDispatchEvent('exit:tunnel:close', { detail: { ...info, error: result.error?.message } })
  }
}

/**
 * A refusal of a private (loopback, LAN, ...) target says how a testnet
 * gets one: a LAN team's consumer saw only "10.88.0.6 is a private
 * address", with nothing to say the exit's operator could allow it.
 */
function withPrivateHint (decision: { reason: string, special?: true }, reason = decision.reason): string {
  return decision.special === true ? `${reason} (an exit takes such targets only when its operator allows them, for a local testnet: --allow-private-targets)` : reason
}

interface ExitState { paused: boolean, pausedSince?: Date }

/**
 * The operator's pause as saved: `{"paused":true,"pausedSince":"..."}`. No
 * file is not paused; a file that cannot be read stops the start, as the
 * quota file does, rather than silently resuming a paused exit.
 */
function readExitState (file: string | undefined): ExitState {
  if (file == null) return { paused: false }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT') return { paused: false }
    throw new Error(`${file}: cannot read the exit state (${err.message})`)
  }
  let saved: any
  try {
    saved = JSON.parse(text)
  } catch {}
  if (typeof saved?.paused !== 'boolean') throw new Error(`${file}: not an exit state file; delete it to start unpaused, or write {"paused": true}`)
  const since = typeof saved.pausedSince === 'string' ? new Date(saved.pausedSince) : undefined
  return { paused: saved.paused, pausedSince: since != null && !Number.isNaN(since.getTime()) ? since : undefined }
}

function writeExitState (file: string, state: ExitState): void {
  writeJsonAtomically(file, { paused: state.paused, pausedSince: state.pausedSince?.toISOString() })
}

/**
 * Dials each address in turn (in the resolver's order) until one answers,
 * all within one connect timeout, and throws the last error. Each attempt
 * but the last gets its share of the time left, at least
 * MIN_CONNECT_ATTEMPT: a name whose first address black-holes (an AAAA
 * record on a host whose IPv6 route is broken) still gets to its next one.
 */
async function dialInOrder (addresses: string[], port: number, timeoutMs: number, signal: AbortSignal): Promise<{ socket: Socket, address: string }> {
  const deadline = Date.now() + timeoutMs
  let last: any
  for (let i = 0; i < addresses.length; i++) {
    const left = deadline - Date.now()
    if (left <= 0) break
    signal.throwIfAborted()
    const remaining = addresses.length - i
    const budget = remaining === 1 ? left : Math.min(left, Math.max(left / remaining, MIN_CONNECT_ATTEMPT))
    try {
      return { socket: await dial(addresses[i], port, Math.round(budget), signal), address: addresses[i] }
    } catch (err) {
      if (signal.aborted) throw err
      last = err
    }
  }
  throw last ?? Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })
}

/**
 * One connect, ended (the socket destroyed, its timer cleared) at its
 * timeout or as soon as `signal` aborts. The socket comes back paused,
 * reading in bulk (see bulk-read.ts) once resumed.
 */
export async function dial (host: string, port: number, timeoutMs: number, signal: AbortSignal): Promise<Socket> {
  signal.throwIfAborted()
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, allowHalfOpen: true, noDelay: true, onread: bulkReads() })
    // a socket reading into a buffer of ours reads as soon as it connects, 'data' listener or not:
    // paused, what a target sends first (a banner) waits for the pump
    socket.pause()
    const fail = (err: Error): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      socket.destroy()
      reject(err)
    }
    const onAbort = (): void => { fail(signal.reason instanceof Error ? signal.reason : new Error('connect aborted')) }
    const timer = setTimeout(() => {
      fail(Object.assign(new Error(`connect timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }))
    }, timeoutMs)
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      resolve(socket)
    })
    socket.once('error', fail)
  })
}

async function withTimeout<T> (p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(message)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** Every address of this machine: an exit never dials itself. */
function localAddresses (): string[] {
  return Object.values(networkInterfaces()).flatMap(list => (list ?? []).map(i => i.address.split('%')[0]))
}

/**
 * The host a multiaddr reaches this node at: an IP address or a DNS name.
 * Relayed addresses (`.../p2p-circuit/...`) start with the relay's host,
 * not ours, so they have none.
 */
function hostOf (ma: Multiaddr): { kind: 'ip', address: string } | { kind: 'name', name: string } | undefined {
  const components = ma.getComponents()
  if (components.some(c => c.name === 'p2p-circuit')) return undefined
  const first = components.find(c => c.name !== 'ip6zone')
  if (first?.value == null) return undefined
  if (first.name === 'ip4' || first.name === 'ip6') return { kind: 'ip', address: first.value }
  if (first.name === 'dns' || first.name === 'dns4' || first.name === 'dns6') return { kind: 'name', name: first.value }
  return undefined
}

export function tunnelExit (init: TunnelExitInit): (components: TunnelExitComponents) => TunnelExit {
  return (components) => new TunnelExit(components, init)
}
