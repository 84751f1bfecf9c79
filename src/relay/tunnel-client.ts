/**
 * The consumer side of a tunnel: pick exits, open a stream to one, send the
 * request, wait for the answer. Failures that are the exit's (unreachable,
 * busy, out of quota or schedule, slow to answer) move on to the next
 * candidate; failures that are the target's (policy, DNS, refused,
 * unreachable or timing out from the exit) do not,
 * since another exit would only say the same. RATE_LIMITED says "not now":
 * when it is what the last exit tried answered, the request waits a little
 * and asks again, for a while, before the client is told.
 */

import { raceAbort } from '../race-abort.ts'
import { GONE_PEER_PAUSE_MS, TUNNEL_PROTOCOL, second } from '../constants.ts'
import { regionMatches } from '../routing/regions.ts'
import { NO_ANSWER } from './status-codes.ts'
import { markLive } from './live-tunnels.ts'
import { EXIT_STOPPING_MESSAGE, MAX_OUTBOUND_TUNNELS, TunnelError, TunnelRequest, TunnelStatus, decodeTunnelResponse, readFrame, sendFrame } from './tunnel-protocol.ts'
import type { ExitRequest, ExitSelector } from './exit-selector.ts'
import type { ConsumerAccounting } from './accounting-hooks.ts'
import type { WarmStreams } from './warm-streams.ts'
import type { ExitLiveness } from './exit-liveness.ts'
import type { AbortOptions, ComponentLogger, Logger, PeerId, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

export const DEFAULT_MAX_ATTEMPTS = 3
export const DEFAULT_RESPONSE_TIMEOUT = 15 * second

/**
 * How long a request refused with RATE_LIMITED keeps asking again. An exit
 * says it for a moment's condition: a consumer's bytes carried faster than
 * its receipts came back (a burst of hundreds of tunnels at once passes the
 * 4 MiB of unsigned bytes an exit allows, and a receipt clears it within a
 * round trip), or as many tunnels open as the exit allows one consumer.
 */
export const DEFAULT_RATE_LIMITED_RETRY_MS = 5 * second
/** First wait before asking again; it doubles, up to RATE_LIMITED_MAX_BACKOFF_MS, with jitter so a burst does not come back at once. */
const RATE_LIMITED_FIRST_BACKOFF_MS = 50
const RATE_LIMITED_MAX_BACKOFF_MS = 1 * second

/**
 * Worth trying another exit for. Not TIMEOUT as an exit answers it: that
 * is its connect to the target timing out (after exit.connect_timeout_seconds,
 * 10 s), and each exit tried waited as long for the same dead host: a
 * scraper's request to one took 30 s to fail, through three exits. An exit
 * that does not answer in time at all is another matter (NoAnswerError).
 */
const RETRYABLE = new Set<string>([
  TunnelStatus.BUSY, TunnelStatus.QUOTA_EXCEEDED, TunnelStatus.OUTSIDE_SCHEDULE,
  TunnelStatus.RATE_LIMITED, TunnelStatus.INSUFFICIENT_CREDIT
])

/** How the selector hears of an exit that answered BUSY because it is stopping (EXIT_STOPPING_MESSAGE): a planned stop. */
export const EXIT_STOPPING = 'EXIT_STOPPING'

/**
 * The exit did not answer within the response timeout: the next exit is
 * tried, and if none is left the client is told NO_ANSWER (a timeout to it,
 * status-codes.ts); the selector hears NO_ANSWER too.
 */
export class NoAnswerError extends TunnelError {
  static name = 'NoAnswerError'
  constructor (exit: string) {
    super(TunnelStatus.TIMEOUT, `exit ${exit} did not answer in time`, exit)
    this.name = 'NoAnswerError'
  }
}

export interface OpenedTunnel {
  stream: Stream
  /** Accounting's session id the tunnel was opened with ('' without accounting). */
  sessionId: string
  /** Bytes the exit sent right behind its response. */
  rest: Uint8ArrayList
  exit: PeerId
  setupMs: number
}

export interface TunnelClientComponents {
  logger: ComponentLogger
  dialProtocol: (peer: PeerId, protocol: string, options: AbortOptions & { runOnLimitedConnection?: boolean, maxOutboundStreams?: number }) => Promise<Stream>
}

export interface TunnelClientInit {
  selector: ExitSelector
  /** Gives the accounting session id sent with each tunnel. */
  accounting?: ConsumerAccounting
  /** @default 3 */
  maxAttempts?: number
  responseTimeoutMs?: number
  /** Streams negotiated ahead of need, so a tunnel starts with its request. */
  warm?: WarmStreams
  /**
   * How long a request the exits answer RATE_LIMITED keeps asking again
   * (with backoff) before that answer goes to the client; 0 asks once.
   * @default 5 s
   */
  rateLimitedRetryMs?: number
  /** Checks an exit a tunnel request waits long on; one found gone fails the requests waiting on it, and is asked last (see ExitLiveness). */
  liveness?: ExitLiveness
  /**
   * Whether an exit found gone may be reached another way: a relay it was
   * reached through went silent, and it has a circuit through another
   * (node/silent-relays.ts). A request it failed so is sent to it once
   * more, on a fresh dial, rather than to the next exit.
   */
  otherRoute?: (exit: PeerId) => Promise<boolean>
  /**
   * This node's own exit region, when it runs one: a node never tunnels
   * through itself, and its operator, seeing NO_EXIT for the region it
   * serves, is told so.
   */
  ownExitRegion?: string
}

/** "Not now, for you": the exit holds as many of this consumer's tunnels (or unsigned bytes) as it takes. */
function isRateLimited (err: unknown): err is TunnelError {
  return err instanceof TunnelError && err.status === TunnelStatus.RATE_LIMITED
}

/**
 * The last exit's refusal, saying what the exits asked before it answered:
 * with one exit paused and the other outside its schedule, the client was
 * told only of the schedule. Its status stays the last exit's.
 */
function withEarlier (err: Error, earlier: string[]): Error {
  if (earlier.length > 0) err.message += ` (${earlier.length === 1 ? 'an exit' : `${earlier.length} exits`} asked before: ${earlier.join('; ')})`
  return err
}

/** The exit could not be dialled (no address that answers, a dead relay's circuit): BUSY to a caller that sees one such exit among others. */
export class UnreachableExitError extends TunnelError {
  static name = 'UnreachableExitError'
  constructor (exit: string, why: string) {
    super(TunnelStatus.BUSY, `cannot reach exit ${exit}: ${why}`, exit)
    this.name = 'UnreachableExitError'
  }
}

/**
 * What a failed dial said, with each address's reason when libp2p tried
 * several: its "All multiaddr dials failed" alone told an operator nothing
 * of an exit behind NAT (a dead relay's circuit, an unroutable home address).
 */
export function dialFailure (err: any): string {
  const each: unknown[] = Array.isArray(err?.errors) ? err.errors : []
  const reasons = [...new Set(each.map(e => saidOfDial(e).slice(0, 200)))]
  if (reasons.length === 0) return saidOfDial(err)
  const shown = reasons.slice(0, 4).join('; ')
  return `${String(err.message)}: ${shown}${reasons.length > 4 ? `; and ${reasons.length - 4} more` : ''}`
}

/** libp2p's words when the node's connection gater refused every address of a peer: they name only the gater. */
const DENIED_ALL = 'The connection gater denied all addresses in the dial request for peer: '

function saidOfDial (err: any): string {
  const message = String(err?.message ?? err)
  if (!message.startsWith(DENIED_ALL)) return message
  return `every address of ${message.slice(DENIED_ALL.length)} is refused here: a relay found silent is not dialled at its address for ${GONE_PEER_PAUSE_MS / 1000} s (nor, on the public network, a private address)`
}

export class NoExitError extends Error {
  static name = 'NoExitError'
  constructor (message = 'No exit available') {
    super(message)
    this.name = 'NoExitError'
  }
}

/**
 * No valid answer came on the stream: it broke first, or the answer was
 * undecodable. The exit may still have dialled the target (a reset can come
 * after the request), so a retry on a fresh stream can make it dial twice:
 * harmless for a TCP connect that carried no data.
 */
class StaleStreamError extends Error {
  static name = 'StaleStreamError'
  constructor (message: string) {
    super(message)
    this.name = 'StaleStreamError'
  }
}

export class TunnelClient {
  private readonly log: Logger
  constructor (private readonly components: TunnelClientComponents, private readonly init: TunnelClientInit) {
    this.log = components.logger.forComponent('spareband:relay:tunnel-client')
  }

  async open (target: { host: string, port: number }, request: ExitRequest, options: AbortOptions = {}): Promise<OpenedTunnel> {
    const retryUntil = performance.now() + (this.init.rateLimitedRetryMs ?? DEFAULT_RATE_LIMITED_RETRY_MS)
    let backoff = RATE_LIMITED_FIRST_BACKOFF_MS
    for (;;) {
      try {
        return await this.openOnce(target, request, options)
      } catch (err: any) {
        if (!isRateLimited(err)) throw err
        const wait = backoff * (0.5 + Math.random())
        if (performance.now() + wait > retryUntil || options.signal?.aborted === true) throw err
        this.log('%s:%d: %s, asking again in %d ms', target.host, target.port, err.message, Math.round(wait))
        await sleep(wait, options.signal)
        backoff = Math.min(backoff * 2, RATE_LIMITED_MAX_BACKOFF_MS)
      }
    }
  }

  /** One pass over the candidates, best first. */
  private async openOnce (target: { host: string, port: number }, request: ExitRequest, options: AbortOptions): Promise<OpenedTunnel> {
    // our own ledger knows all we spent; an exit knows what it carried and what gossip told it so far
    const broke = this.init.accounting?.outOfCredit?.()
    if (broke != null) throw new TunnelError(TunnelStatus.INSUFFICIENT_CREDIT, broke)
    // the search may take a DHT query's time (15 s with no peer); a caller that gives up is not kept for it, and the search goes on filling the cache
    const ranked = await raceAbort(this.init.selector.candidates(request), options.signal)
    // exits found gone lately are asked last: a request does not wait on them while another may answer
    const candidates = this.init.liveness?.arrange(ranked) ?? ranked
    if (candidates.length === 0) {
      const own = request.region != null && this.init.ownExitRegion != null && regionMatches(this.init.ownExitRegion, request.region)
        ? ` (this node's own exit, in ${this.init.ownExitRegion}, does not carry its own traffic)`
        : ''
      throw new NoExitError(request.region != null ? `no exit known in region ${request.region}${own}` : 'no exit known')
    }
    const attempts = Math.min(candidates.length, this.init.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)
    // what each exit asked said: the client learns all of it, not only the last word
    const failed: Array<{ err: Error, said: string }> = []
    const saidBy = (except?: Error): string[] => failed.filter(f => f.err !== except).map(f => f.said)
    for (let i = 0; i < attempts; i++) {
      const exit = candidates[i]
      const started = performance.now()
      // counted from the start of the set-up, which takes a round trip and the exit's connect:
      // requests ranked meanwhile must see it (see RoutingSelector.opened)
      const closed = this.init.selector.opened?.(exit)
      try {
        const opened = await this.tryExit(exit, target, request, options)
        this.init.liveness?.alive(exit)
        this.init.selector.report(exit, request, { ok: true, setupMs: opened.setupMs })
        if (closed != null) {
          if (opened.stream.status === 'open') opened.stream.addEventListener('close', closed, { once: true })
          else closed()
        }
        return opened
      } catch (err: any) {
        closed?.()
        // the caller gave up (an app's AbortSignal, a client gone): that says nothing of the exit, so it is
        // not reported (telemetry, the session's hold on it, reputation reports), and the caller gets its reason
        if (options.signal?.aborted === true) throw options.signal.reason ?? err
        const status: string = err instanceof NoAnswerError ? NO_ANSWER : err instanceof TunnelError ? err.status : (err.name ?? 'Error')
        // an exit that says it is stopping is gone (avoided like any), but not at fault: its reputation does not hear of it
        const planned = err instanceof TunnelError && err.status === TunnelStatus.BUSY && err.message === EXIT_STOPPING_MESSAGE
        this.init.selector.report(exit, request, { ok: false, status: planned ? EXIT_STOPPING : status, setupMs: performance.now() - started })
        if (err instanceof TunnelError && !(err instanceof NoAnswerError) && !RETRYABLE.has(err.status)) throw withEarlier(err, saidBy())
        // a session keeps its exit (its address) while the exit is up: "not now" is waited out (see open), not a reason to move
        if (request.sessionId != null && isRateLimited(err)) throw withEarlier(err, saidBy())
        this.log('exit %p failed for %s:%d (%s), %s', exit, target.host, target.port, status, i + 1 < attempts ? 'trying the next' : 'giving up')
        failed.push({ err, said: `${exit.toString()} ${status}: ${err.message}` })
      }
    }
    // the last word is the last exit's, but for the first "not now, for you" before it, which open() waits
    // out: a scraper's burst past its share of one exit, then an exit it could not reach, was a 503 at once
    const last = failed.find(f => isRateLimited(f.err))?.err ?? failed[failed.length - 1].err
    // none could be dialled (all gone, or their relays): no exit, rather than a busy one
    if (failed.every(f => f.err instanceof UnreachableExitError)) {
      throw withEarlier(new NoExitError(`no exit${request.region != null ? ` in region ${request.region}` : ''} could be reached: ${last.message}`), saidBy(last))
    }
    throw withEarlier(last, saidBy(last))
  }

  private async tryExit (exit: PeerId, target: { host: string, port: number }, request: ExitRequest, options: AbortOptions): Promise<OpenedTunnel> {
    const started = performance.now()
    const signal = AbortSignal.any([AbortSignal.timeout(this.init.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT), ...(options.signal != null ? [options.signal] : [])])
    try {
      return await this.tryExitOnce(exit, target, options, signal, started, true)
    } catch (err: any) {
      // found gone, with time left: when what went silent was a relay of the exit's, and it has another,
      // it is asked again through that one, within the same time (a session keeps its exit, a region of one exit its request)
      if (!(err instanceof NoAnswerError) || signal.aborted || this.init.otherRoute == null || !(await this.init.otherRoute(exit))) throw err
      this.log('exit %p did not answer through a relay that went silent: asking it again through another', exit)
      try {
        return await this.tryExitOnce(exit, target, options, signal, started, false)
      } catch (again: any) {
        // a refusal is the exit's answer; no way through either is the first verdict's, no answer
        if (again instanceof TunnelError && !(again instanceof UnreachableExitError) && !(again instanceof NoAnswerError)) throw again
        throw err
      }
    }
  }

  private async tryExitOnce (exit: PeerId, target: { host: string, port: number }, options: AbortOptions, signal: AbortSignal, started: number, useWarm: boolean): Promise<OpenedTunnel> {
    const warm = useWarm ? this.init.warm?.take(exit) : undefined
    if (warm != null) {
      try {
        return await this.request(warm, exit, target, signal, started)
      } catch (err: any) {
        // a warm stream the exit or the link dropped while it idled: that says
        // nothing of the exit's answer, so ask again on a fresh stream
        if (!(err instanceof StaleStreamError)) throw err
        // ended because the exit was found gone: a fresh stream would only wait on it again
        if (this.init.liveness?.avoided(exit) === true) throw new NoAnswerError(exit.toString())
        this.log('warm stream to %p was stale (%s), opening a fresh one', exit, err.message)
      }
    }
    let stream: Stream
    // a stream opened on a connection that went silent (a relay that died) waited out the whole response
    // time in its negotiation: it is checked as a request waiting for its answer is (a dial under way is not judged)
    const gone = new AbortController()
    const unwatch = this.init.liveness?.watch(exit, reason => { gone.abort(reason) })
    try {
      stream = await this.components.dialProtocol(exit, TUNNEL_PROTOCOL, { signal: AbortSignal.any([signal, gone.signal]), runOnLimitedConnection: true, maxOutboundStreams: MAX_OUTBOUND_TUNNELS })
    } catch (err: any) {
      // found gone while the stream was being opened: as good as no answer (and the relay may be what died)
      if (gone.signal.aborted && !signal.aborted) throw new NoAnswerError(exit.toString())
      // not the caller giving up: the addresses dialled may be stale (the exit moved to another relay)
      if (options.signal?.aborted !== true) {
        this.init.selector.unreachable?.(exit)
        this.init.liveness?.unreachable(exit)
      }
      throw new UnreachableExitError(exit.toString(), dialFailure(err))
    } finally {
      unwatch?.()
    }
    try {
      return await this.request(stream, exit, target, signal, started)
    } catch (err: any) {
      if (err instanceof StaleStreamError) throw new TunnelError(TunnelStatus.BUSY, `exit ${exit.toString()} failed: ${err.message}`, exit.toString())
      throw err
    }
  }

  /** Sends the request on an open tunnel stream and waits for the exit's answer. */
  private async request (stream: Stream, exit: PeerId, target: { host: string, port: number }, signal: AbortSignal, started: number): Promise<OpenedTunnel> {
    let sessionId = ''
    const gone = new AbortController()
    try {
      // the wait for a proof-of-work solve may be long: a caller gone meanwhile sends no request, so the exit dials nothing
      await raceAbort(this.init.accounting?.prepare?.(exit).catch(() => {}) ?? Promise.resolve(), signal)
      // the wire session id is accounting's; the targeting session id only picks the exit
      sessionId = this.init.accounting?.sessionFor(exit) ?? ''
      // a tunnel from its request on: a close of its connection waits for it (node/tunnel-close-guard.ts)
      markLive(stream)
      await sendFrame(stream, TunnelRequest.encode({ sessionId, targetHost: target.host, targetPort: target.port }))
      // from here the exit owes an answer: one long in coming gets it checked (see ExitLiveness)
      const unwatch = this.init.liveness?.watch(exit, reason => { gone.abort(reason) })
      let answer: Awaited<ReturnType<typeof readFrame>>
      try {
        answer = await readFrame(stream, { signal: AbortSignal.any([signal, gone.signal]) })
      } finally {
        unwatch?.()
      }
      const { frame, rest } = answer
      this.init.liveness?.answered(exit)
      const response = decodeTunnelResponse(frame)
      if (response.status !== TunnelStatus.OK) {
        stream.abort(new Error(response.status))
        throw new TunnelError(response.status, response.message, exit.toString())
      }
      this.init.warm?.replenish(exit)
      return { stream, sessionId, rest, exit, setupMs: performance.now() - started }
    } catch (err: any) {
      if (sessionId !== '') this.init.accounting?.release?.(exit, sessionId)
      if (stream.status === 'open') stream.abort(err)
      if (err instanceof TunnelError) throw err
      // found gone while we waited: as good as no answer, and the next exit is asked at once
      if (signal.aborted || gone.signal.aborted) throw new NoAnswerError(exit.toString())
      throw new StaleStreamError(err.message)
    }
  }
}

/** Resolves after `ms`, or rejects as soon as `signal` aborts. */
async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason ?? new Error('aborted')) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
