/**
 * What the SOCKS5 and HTTP proxies share: opening a tunnel for a client
 * connection with its targeting, carrying bytes, and the counters that
 * `status` shows.
 */

import { isLoopback } from './listen-address.ts'
import { formatHostPort } from '../errors.ts'
import { NoticeLimiter, noticeText } from '../notice-limiter.ts'
import { pipeSocketStream, resetSocket } from './pipe.ts'
import { readBytesOf } from './bulk-read.ts'
import { NO_ANSWER, NO_EXIT, TARGET_OUTCOMES } from './status-codes.ts'
import { TunnelError, TunnelStatus, targetHostProblem } from './tunnel-protocol.ts'
import type { Outcome } from './status-codes.ts'
import type { Targeting, Credentials } from './targeting.ts'
import { NoAnswerError } from './tunnel-client.ts'
import type { OpenedTunnel, TunnelClient } from './tunnel-client.ts'
import type { TransferSample } from './exit-selector.ts'
import type { ConsumerAccounting } from './accounting-hooks.ts'
import type { PipeOptions } from './pipe.ts'
import type { Socket } from 'node:net'
import type { AbortOptions, Logger, PeerId, Stream } from '@libp2p/interface'

/** A client the proxy itself refused, for the operator's log (see IngressInit.onRefusal). */
export interface ProxyRefusalNotice {
  proxy: 'socks5' | 'http'
  /** 'targeting': a user name that names no exit; 'credentials': missing or wrong. */
  kind: 'targeting' | 'credentials'
  reason: string
  /** Refusals not reported since the last report, over the rate limit. */
  suppressed: number
}

/**
 * A tunnel no exit carried (see IngressInit.onFailure): an exit refused it
 * (no credit with it, paused, its quota, the target's answer...), or none
 * was found. The client gets the refusal; the operator gets this.
 */
export interface ProxyFailureNotice {
  /** What the client was told: the last exit's status (BUSY, INSUFFICIENT_CREDIT, CONNECT_REFUSED, ...), NO_EXIT or NO_ANSWER. */
  outcome: Outcome
  /** The peer id of the exit that refused, when one did. */
  exit?: string
  /** Whether the outcome is the target's answer (see TARGET_OUTCOMES), not the exits' refusal of this node or no exit found. */
  fromTarget: boolean
  /** host:port asked for. */
  target: string
  reason: string
  /** Failures not reported since the last report, over the rate limit. */
  suppressed: number
}

/** Refusals reported per window; the rest are counted and the count goes with the next report. */
export const DEFAULT_REFUSAL_NOTICES_PER_MINUTE = 10

export interface IngressInit {
  client: TunnelClient
  credentials: Credentials
  /** Region when the user name names none. */
  defaultRegion?: string
  idleTimeoutMs?: number
  log: Logger
  /** Metering for receipts. */
  accounting?: ConsumerAccounting
  /** Telemetry of finished tunnels, for exit selection. */
  onTransfer?: (exit: OpenedTunnel['exit'], sample: TransferSample) => void
  /**
   * Told why the proxy refused a client before any exit was asked (a user
   * name that names no exit, wrong credentials), rate-limited (see
   * NoticeLimiter): a client sees its refusal, the operator sees this.
   */
  onRefusal?: (notice: ProxyRefusalNotice) => void
  /**
   * Told, rate-limited as onRefusal, of each tunnel no exit carried: what
   * the exits said reached the client alone (a SOCKS client sees a reply
   * code), and the consumer's operator never learnt that exits refused it.
   */
  onFailure?: (notice: ProxyFailureNotice) => void
  /** @default DEFAULT_REFUSAL_NOTICES_PER_MINUTE */
  refusalNoticesPerMinute?: number
}

export interface IngressStats {
  bytesIn: number
  bytesOut: number
  tunnelsOpen: number
  tunnelsTotal: number
  /** Tunnels that could not be opened: no exit, or every exit asked refused or failed. */
  failed: number
  /** `failed` by what the client was told (the last exit's status, NO_EXIT or NO_ANSWER). */
  failedByStatus: Record<string, number>
  /** Clients the proxies refused before any exit was asked: a user name that names no exit, missing or wrong credentials. */
  refused: { targeting: number, credentials: number }
  /** Tunnels that opened and then ended abnormally: a reset at either end, the exit lost, an idle timeout. */
  broken: number
}

export class ProxyRefusal extends Error {
  static name = 'ProxyRefusal'
  /** `exit`: the peer id of the exit that refused, when one did. */
  constructor (readonly outcome: Outcome, message: string, readonly exit?: string) {
    super(message)
    this.name = 'ProxyRefusal'
  }
}

/** The client closed its connection while its tunnel was being opened: nothing to answer, no one to answer to. */
export class ClientGoneError extends Error {
  static name = 'ClientGoneError'
  constructor (message = 'the client closed its connection before the tunnel was open') {
    super(message)
    this.name = 'ClientGoneError'
  }
}

/**
 * What a client may send while its tunnel is being opened that the proxy
 * holds for it (HTTP proxy clients send a request's body at once). Past
 * this the socket is paused (so up to one read more is held: 256 KiB),
 * and a reset waits for the pump to be seen.
 */
export const HELD_WHILE_OPENING = 64 * 1024

/**
 * Aborts when the client leaves while its tunnel is being opened, so the
 * exit search, the stream and the exit's connect to the target end with it
 * rather than at their timeouts. The socket is read meanwhile and what it
 * sends held (past HELD_WHILE_OPENING it is paused): a proxy socket
 * reads into a buffer of ours (bulk-read.ts), and such a socket paused
 * reads nothing at all, not even a reset or a FIN. A reset ('close') is
 * leaving; a FIN ('end') is leaving only when the client sent nothing for
 * the target (`sentForTarget`, or bytes held here): a client that sends
 * its data and half-closes at once still gets its answer (the pump passes
 * the FIN on). `stop()` pauses the socket again and hands back what was held.
 */
export function watchClient (socket: Socket, sentForTarget: boolean): { signal: AbortSignal, stop: () => Uint8Array } {
  const controller = new AbortController()
  const held: Buffer[] = []
  let heldBytes = 0
  const gone = (): void => { controller.abort(new ClientGoneError()) }
  const onEnd = (): void => { if (!sentForTarget && heldBytes === 0) gone() }
  const onData = (chunk: Buffer): void => {
    held.push(chunk)
    heldBytes += chunk.byteLength
    if (heldBytes >= HELD_WHILE_OPENING) socket.pause()
  }
  if (socket.destroyed || (socket.readableEnded && !sentForTarget)) gone()
  socket.once('close', gone)
  socket.once('end', onEnd)
  socket.on('data', onData)
  if (!socket.destroyed && !socket.readableEnded) socket.resume()
  return {
    signal: controller.signal,
    stop: () => {
      socket.off('close', gone)
      socket.off('end', onEnd)
      socket.off('data', onData)
      socket.pause()
      return held.length === 1 ? held[0] : Buffer.concat(held)
    }
  }
}

/**
 * An open tunnel, for telling a live exit from a gone one (performance.now()
 * ms): when it opened, and when it last moved bytes either way. Bytes from
 * the exit say it is there. Bytes to it say only that a ping of ours may
 * queue behind them: a check then says nothing (see ExitLiveness), so an
 * upload, or a keep-alive, to an exit that went away is left to libp2p's
 * connection monitor.
 */
interface Flow { openedAt: number, activeAt: number, stream: Stream }

export class Ingress {
  readonly stats: IngressStats = { bytesIn: 0, bytesOut: 0, tunnelsOpen: 0, tunnelsTotal: 0, failed: 0, failedByStatus: {}, refused: { targeting: 0, credentials: 0 }, broken: 0 }
  private readonly sockets = new Set<Socket>()
  private readonly refusals: NoticeLimiter
  private readonly failures: NoticeLimiter
  /** The open tunnels by exit id, with when each opened and last moved bytes (see heardSince, silentExits). */
  private readonly flows = new Map<string, { exit: PeerId, flows: Set<Flow> }>()

  constructor (readonly init: IngressInit) {
    this.refusals = new NoticeLimiter(init.refusalNoticesPerMinute ?? DEFAULT_REFUSAL_NOTICES_PER_MINUTE)
    this.failures = new NoticeLimiter(init.refusalNoticesPerMinute ?? DEFAULT_REFUSAL_NOTICES_PER_MINUTE)
  }

  /** The proxy refused a client on its own (targeting, credentials): logged, and reported to the operator within the rate limit. */
  refused (proxy: ProxyRefusalNotice['proxy'], kind: ProxyRefusalNotice['kind'], reason: string): void {
    // the reason quotes what the client sent (its user name, its request target)
    const shown = noticeText(reason)
    this.stats.refused[kind]++
    this.init.log('%s client refused (%s): %s', proxy, kind, shown)
    const suppressed = this.refusals.take()
    if (suppressed != null) this.init.onRefusal?.({ proxy, kind, reason: shown, suppressed })
  }

  /** Refuse to serve beyond loopback without credentials: an open proxy is abuse waiting to happen. */
  checkBindAllowed (host: string, what: string): void {
    if (!isLoopback(host) && this.init.credentials.password == null) {
      throw new Error(`${what} would listen on ${host}, beyond loopback, without credentials: set proxy.username and proxy.password, or keep proxy.host = "127.0.0.1"`)
    }
  }

  /** Client connections to the proxies open now, in their handshake, tunnelled or refused and draining. */
  get clientsOpen (): number { return this.sockets.size }

  track (socket: Socket): void {
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
  }

  /** Whether any open tunnel to `exit` moved bytes after `since` (performance.now() ms): the exit is alive. */
  heardSince (exit: PeerId, since: number): boolean {
    for (const flow of this.flows.get(exit.toString())?.flows ?? []) if (flow.activeAt > since) return true
    return false
  }

  /** The exits whose open tunnels have all moved nothing for `ms` (or since they opened, if later). */
  silentExits (ms: number): PeerId[] {
    const before = performance.now() - ms
    const silent: PeerId[] = []
    for (const { exit, flows } of this.flows.values()) {
      let quiet = true
      for (const f of flows) {
        if (f.openedAt > before || f.activeAt > before) {
          quiet = false
          break
        }
      }
      if (quiet) silent.push(exit)
    }
    return silent
  }

  /** Ends every open tunnel through `exit` with `reason` (found gone: its clients see a reset). */
  abortTunnelsTo (exit: PeerId, reason: Error): void {
    for (const flow of this.flows.get(exit.toString())?.flows ?? []) if (flow.stream.status === 'open') flow.stream.abort(reason)
  }

  /** Ends every open tunnel with `reason` (its client sees a reset). */
  abortAll (reason: Error): number {
    let ended = 0
    for (const { flows } of this.flows.values()) {
      for (const flow of flows) {
        if (flow.stream.status !== 'open') continue
        flow.stream.abort(reason)
        ended++
      }
    }
    return ended
  }

  /**
   * At a stop: every client connection ends with a reset, not a FIN, so a
   * client in the middle of a download (one with no length, or its
   * keep-alive tunnel) does not take what it got for the whole.
   */
  closeAll (): void {
    for (const s of this.sockets) resetSocket(s)
  }

  /** Opens a tunnel or throws ProxyRefusal with the outcome to report to the client; once `options.signal` aborts, its reason. */
  async open (target: { host: string, port: number }, targeting: Targeting, options: AbortOptions = {}): Promise<OpenedTunnel> {
    // a host no exit would take (a.b..c, bad!host) is the proxy's own refusal: no exit is asked, none is named
    const problem = targetHostProblem(target.host)
    if (problem != null) {
      const refusal = new ProxyRefusal(TunnelStatus.BAD_REQUEST, `target host ${JSON.stringify(target.host.slice(0, 300))} ${problem}`)
      this.failed(refusal, formatHostPort(target.host, target.port))
      throw refusal
    }
    const request = { region: targeting.region ?? this.init.defaultRegion, sessionId: targeting.sessionId }
    try {
      return await this.init.client.open(target, request, options)
    } catch (err: any) {
      // a caller that gave up (an app's signal, a client gone) is no tunnel the network failed to carry
      if (options.signal?.aborted === true) throw options.signal.reason
      const refusal = err instanceof NoAnswerError
        ? new ProxyRefusal(NO_ANSWER, err.message, err.exit)
        : err instanceof TunnelError
          ? new ProxyRefusal(err.status, err.message, err.exit)
          : new ProxyRefusal(NO_EXIT, err.message ?? String(err))
      this.failed(refusal, formatHostPort(target.host, target.port))
      throw refusal
    }
  }

  /** Counts a tunnel no exit carried, and tells the operator within the rate limit. */
  private failed (refusal: ProxyRefusal, target: string): void {
    this.stats.failed++
    this.stats.failedByStatus[refusal.outcome] = (this.stats.failedByStatus[refusal.outcome] ?? 0) + 1
    const suppressed = this.failures.take()
    // the reason quotes the target host the client asked for
    if (suppressed != null) this.init.onFailure?.({ outcome: refusal.outcome, exit: refusal.exit, fromTarget: TARGET_OUTCOMES.has(refusal.outcome), target: noticeText(target), reason: noticeText(refusal.message), suppressed })
  }

  /**
   * Opens a tunnel for a proxy client, given up as soon as the client
   * leaves (see watchClient): then throws ClientGoneError, and the stream,
   * if one was opened, is aborted. Otherwise as open(), with what goes to
   * the target first: `early` (what came with the client's request) and
   * what the client sent meanwhile. `sentForTarget`: whether the client
   * sent anything for the target already (see watchClient).
   */
  async openFor (socket: Socket, target: { host: string, port: number }, targeting: Targeting, early: Uint8Array, sentForTarget = early.byteLength > 0): Promise<{ tunnel: OpenedTunnel, early: Uint8Array }> {
    const client = watchClient(socket, sentForTarget)
    let tunnel: OpenedTunnel
    let sentMeanwhile: Uint8Array
    try {
      tunnel = await this.open(target, targeting, { signal: client.signal })
    } finally {
      sentMeanwhile = client.stop()
    }
    // destroyed here without its 'close' yet (closeAll() at a stop): gone all the same
    if (client.signal.aborted || socket.destroyed) {
      const reason = client.signal.aborted ? client.signal.reason : new ClientGoneError()
      this.abandon(tunnel, reason)
      throw reason
    }
    return { tunnel, early: sentMeanwhile.byteLength === 0 ? early : Buffer.concat([early, sentMeanwhile]) }
  }

  /** A tunnel opened for a client that left before it was used: ends it, and its hold on the session. */
  abandon (tunnel: OpenedTunnel, reason: Error): void {
    tunnel.stream.abort(reason)
    if (tunnel.sessionId !== '') this.init.accounting?.release?.(tunnel.exit, tunnel.sessionId)
  }

  /**
   * Carries a client connection through an opened tunnel until both sides are done.
   * `filters`: what of each chunk goes on, each way (see PipeOptions), and
   * `grownToSocket`, how many bytes filterToSocket has added so far (the
   * HTTP proxy's own header): the meter counts what the exit carried.
   */
  async carry (socket: Socket, tunnel: OpenedTunnel, initialToStream?: Uint8Array, filters: Pick<PipeOptions, 'filterToStream' | 'filterToSocket' | 'flushToSocket'> & { grownToSocket?: () => number } = {}): Promise<void> {
    this.stats.tunnelsOpen++
    this.stats.tunnelsTotal++
    const started = performance.now()
    let firstByteAt = 0
    let lastByteAt = 0
    const flow: Flow = { openedAt: started, activeAt: 0, stream: tunnel.stream }
    const exitId = tunnel.exit.toString()
    let entry = this.flows.get(exitId)
    if (entry == null) this.flows.set(exitId, entry = { exit: tunnel.exit, flows: new Set() })
    const flows = entry.flows
    flows.add(flow)
    let bytes = 0
    let grownMetered = 0
    try {
      const accounting = this.init.accounting
      if (initialToStream != null && initialToStream.byteLength > 0) {
        // the exit may already be gone; the pump below then sees the closed stream
        try { tunnel.stream.send(initialToStream) } catch {}
        this.stats.bytesOut += initialToStream.byteLength
        accounting?.meter(tunnel.exit, 'up', initialToStream.byteLength)
      }
      const result = await pipeSocketStream(socket, tunnel.stream, {
        ...filters,
        initial: tunnel.rest,
        readBytes: readBytesOf(socket),
        idleTimeoutMs: this.init.idleTimeoutMs,
        onChunk: (direction, n) => {
          bytes += n
          flow.activeAt = performance.now()
          if (direction === 'toStream') {
            accounting?.meter(tunnel.exit, 'up', n)
            this.stats.bytesOut += n
          } else {
            // what the proxy added itself (the HTTP proxy's X-Spareband-Exit and Connection headers) came
            // from no exit: neither metered nor counted in, taken off the chunks written from the one that
            // carries it on, never below 0 each
            const due = (filters.grownToSocket?.() ?? 0) - grownMetered
            const off = due > 0 ? Math.min(n, due) : due
            grownMetered += off
            accounting?.meter(tunnel.exit, 'down', n - off)
            this.stats.bytesIn += n - off
            lastByteAt = flow.activeAt
            if (firstByteAt === 0) firstByteAt = lastByteAt
          }
          return 0
        }
      })
      if (firstByteAt > 0) {
        this.init.onTransfer?.(tunnel.exit, { bytes, durationMs: Math.max(1, lastByteAt - firstByteAt), ttfbMs: tunnel.setupMs + (firstByteAt - started) })
      }
      if (result.error != null) {
        this.stats.broken++
        this.init.log('tunnel via %p ended: %s', tunnel.exit, result.error.message)
      }
    } finally {
      flows.delete(flow)
      if (flows.size === 0) this.flows.delete(exitId)
      this.stats.tunnelsOpen--
      if (tunnel.sessionId !== '') this.init.accounting?.release?.(tunnel.exit, tunnel.sessionId)
    }
  }
}
