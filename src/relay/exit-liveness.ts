/**
 * Finds exits that stopped answering without closing their connections: a
 * home line that dropped, a host that hung or slept. TCP keeps such a
 * connection up, libp2p's connection monitor gives a ping a minute
 * (PING_TIMEOUT_FLOOR, see node/libp2p.ts) before it ends it, and until
 * then every tunnel asked of the exit waited out the whole response
 * timeout (15 s) before the next exit was tried (measured with a stopped
 * exit process: two requests of six took 15 s each), and a download from
 * it stalled for that minute.
 *
 * Two things start a check: a tunnel request sent to the exit that has had
 * no answer for `suspectAfterMs` (an exit answers only once its connect to
 * the target is done, which may take seconds: that alone says nothing),
 * and open tunnels to it that have all moved nothing for `silentAfterMs`.
 * A check pings the exit on the connection we have to it (relayed or
 * not), one check per exit at a time. A live exit answers at once, unless
 * the answer queues behind tunnel data it is sending us (we hear that
 * data), behind tunnel requests it is answering (we hear those answers),
 * or our ping queues behind data we are sending it (a tunnel of ours moved
 * bytes: the check says nothing then, and the connection monitor decides).
 * So an exit that neither answers the ping in its time nor is heard from
 * meanwhile is taken for gone:
 * - the set-ups waiting on it fail at once and move on to the next exit,
 *   and its open tunnels and warm streams are ended (the clients see a
 *   reset, never a short body passed off as whole);
 * - it is asked last for a while (`avoidMs`, doubling while it keeps going
 *   away), until a tunnel through it works again.
 * Its connection itself is left to libp2p's connection monitor: the peer
 * may be our relay, a DHT neighbour, or a consumer of ours as well, and a
 * check that was wrong then costs only our tunnels through it.
 *
 * The ping of a silent tunnel's exit gets more time (`silentPingTimeoutMs`)
 * than one a client waits on: an idle keep-alive connection through a busy
 * exit is worth more than a quick verdict.
 */

import type { AbortOptions, Logger, PeerId } from '@libp2p/interface'
import { minute, second } from '../constants.ts'

export const DEFAULT_SUSPECT_AFTER_MS = 3 * second
export const DEFAULT_PING_TIMEOUT_MS = 5 * second
export const DEFAULT_SILENT_AFTER_MS = 10 * second
export const DEFAULT_SILENT_PING_TIMEOUT_MS = 15 * second
export const DEFAULT_AVOID_MS = 30 * second
export const MAX_AVOID_MS = 10 * minute
/** After the ping's time is up, I/O the event loop had not read yet (a busy loop runs timers first) gets this long to land. */
const LATE_ANSWER_GRACE_MS = 250
/** How soon a ping that failed before its time is tried again (at most; a fifth of the ping's time when that is shorter). */
const EARLY_RETRY_MS = 200
/** Exits held as avoided at most; the one that went longest ago is forgotten first. */
const MAX_AVOIDED = 10_000

export class ExitUnresponsiveError extends Error {
  static name = 'ExitUnresponsiveError'
  constructor (message: string) {
    super(message)
    this.name = 'ExitUnresponsiveError'
  }
}

export interface ExitLivenessInit {
  /**
   * Pings the exit on the connection we have to it: resolves true once it
   * answered, false when there is no connection to ping on (nothing to
   * judge: a set-up's own dial has its own time limit), rejects when the
   * ping failed or the signal aborted first.
   */
  ping: (exit: PeerId, options: AbortOptions) => Promise<boolean>
  /** Whether a tunnel to the exit moved bytes (either way) after `since` (performance.now() ms): see Ingress.heardSince. */
  heardSince: (exit: PeerId, since: number) => boolean
  /** Ends our open tunnels and warm streams to the exit, with `reason`. */
  drop: (exit: PeerId, reason: Error) => void
  /** The exits whose open tunnels have all moved nothing for `ms` (see start()). */
  silentExits?: (ms: number) => PeerId[]
  log: Logger
  /** @default DEFAULT_SUSPECT_AFTER_MS */
  suspectAfterMs?: number
  /** @default DEFAULT_PING_TIMEOUT_MS */
  pingTimeoutMs?: number
  /** @default DEFAULT_SILENT_AFTER_MS */
  silentAfterMs?: number
  /** @default DEFAULT_SILENT_PING_TIMEOUT_MS */
  silentPingTimeoutMs?: number
  /** @default DEFAULT_AVOID_MS */
  avoidMs?: number
}

interface Avoided { until: number, ms: number }

export class ExitLiveness {
  /** Exit ids whose check is under way. */
  private readonly checking = new Set<string>()
  /** By exit id, in the order they were found gone. */
  private readonly avoidedExits = new Map<string, Avoided>()
  /** The set-ups waiting on each exit's answer: told when it is found gone. */
  private readonly waiting = new Map<string, Set<(reason: Error) => void>>()
  private readonly timers = new Set<NodeJS.Timeout>()
  /** When each exit last answered a tunnel request (performance.now() ms), for the exits being checked. */
  private readonly lastAnswer = new Map<string, number>()
  /** When each silent exit was last checked (performance.now() ms). */
  private readonly silentChecked = new Map<string, number>()
  private readonly controller = new AbortController()
  private sweepTimer?: NodeJS.Timeout
  /** Exits found gone since start, for status. */
  dropped = 0

  constructor (private readonly init: ExitLivenessInit) {}

  /** Starts checking the exits of silent tunnels (init.silentExits), if given. */
  start (): void {
    const silentExits = this.init.silentExits
    if (silentExits == null || this.sweepTimer != null) return
    const silentMs = this.init.silentAfterMs ?? DEFAULT_SILENT_AFTER_MS
    const pingMs = this.init.silentPingTimeoutMs ?? DEFAULT_SILENT_PING_TIMEOUT_MS
    this.sweepTimer = setInterval(() => {
      const now = performance.now()
      for (const [id, at] of this.silentChecked) if (now - at >= silentMs) this.silentChecked.delete(id)
      for (const exit of silentExits(silentMs)) {
        const id = exit.toString()
        // one found gone just now has had its tunnels ended
        if (this.silentChecked.has(id) || this.avoided(exit)) continue
        this.silentChecked.set(id, now)
        void this.check(exit, pingMs)
      }
    }, silentMs / 2)
    this.sweepTimer.unref()
  }

  /**
   * A tunnel request was sent to `exit` and its answer is awaited: checks
   * the exit if the wait grows to `suspectAfterMs`; `gone` is called if the
   * exit is found gone meanwhile. Call the returned function once the
   * answer (or the failure) is in.
   */
  watch (exit: PeerId, gone: (reason: Error) => void): () => void {
    const id = exit.toString()
    let waiters = this.waiting.get(id)
    if (waiters == null) this.waiting.set(id, waiters = new Set())
    waiters.add(gone)
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      void this.check(exit, this.init.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS)
    }, this.init.suspectAfterMs ?? DEFAULT_SUSPECT_AFTER_MS)
    timer.unref()
    this.timers.add(timer)
    return () => {
      clearTimeout(timer)
      this.timers.delete(timer)
      waiters.delete(gone)
      if (waiters.size === 0 && this.waiting.get(id) === waiters) this.waiting.delete(id)
    }
  }

  /** Whether `exit` was found gone and is to be tried after every other. */
  avoided (exit: PeerId): boolean {
    const a = this.avoidedExits.get(exit.toString())
    return a != null && performance.now() < a.until
  }

  /** `candidates` with the exits found gone moved to the end, the rest in their order. */
  arrange (candidates: PeerId[]): PeerId[] {
    if (this.avoidedExits.size === 0) return candidates
    const live = candidates.filter(c => !this.avoided(c))
    return live.length === candidates.length ? candidates : [...live, ...candidates.filter(c => this.avoided(c))]
  }

  /**
   * `exit` answered a tunnel request (whatever it said): alive. Only kept
   * while the exit is being checked: a burst of set-ups on a busy exit
   * answers them one after another while its ping waits in the queue.
   */
  answered (exit: PeerId): void {
    if (this.checking.size === 0) return
    const id = exit.toString()
    if (this.checking.has(id)) this.lastAnswer.set(id, performance.now())
  }

  /**
   * `exit` could not be dialled (no address of it answers: it died, or the
   * relay its ad names did): asked last, as one found gone is, until a
   * tunnel through it works again. Ranked by score alone, a region whose
   * best exits had died had every request dial them first, each a failure
   * (a wait, through a dead relay) before a live exit was asked, and with
   * as many dead as a request's attempts, requests failed with a live
   * exit left.
   */
  unreachable (exit: PeerId): void {
    this.avoid(exit.toString())
  }

  /** A tunnel through `exit` opened: it answers again. */
  alive (exit: PeerId): void {
    if (this.avoidedExits.size > 0) this.avoidedExits.delete(exit.toString())
  }

  stop (): void {
    clearInterval(this.sweepTimer)
    this.controller.abort()
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }

  private async check (exit: PeerId, timeoutMs: number): Promise<void> {
    const id = exit.toString()
    if (this.checking.has(id) || this.controller.signal.aborted) return
    this.checking.add(id)
    const since = performance.now()
    try {
      const verdict = await this.pinged(exit, timeoutMs)
      if (verdict !== 'silent' || this.heardSince(exit, id, since) || this.controller.signal.aborted) return
      const reason = new ExitUnresponsiveError(`exit ${id} did not answer a ping within ${timeoutMs} ms, nor was anything heard from it meanwhile`)
      this.avoid(id)
      this.dropped++
      this.init.log('%s: ending our tunnels through it and asking it last for %d s', reason.message, Math.round(this.avoidedExits.get(id)!.ms / 1000))
      for (const gone of this.waiting.get(id) ?? []) gone(reason)
      this.init.drop(exit, reason)
    } finally {
      this.checking.delete(id)
      this.lastAnswer.delete(id)
    }
  }

  private heardSince (exit: PeerId, id: string, since: number): boolean {
    return (this.lastAnswer.get(id) ?? -Infinity) > since || this.init.heardSince(exit, since)
  }

  /**
   * 'answered' when a ping got its answer within `timeoutMs` (and the grace
   * for an answer the loop had not read yet), 'silent' when none did,
   * 'unknown' when there is no connection to ping on. A ping that fails
   * before its time (no stream to be had just now) is tried again, every
   * EARLY_RETRY_MS: only silence for the whole time counts.
   */
  private async pinged (exit: PeerId, timeoutMs: number): Promise<'answered' | 'silent' | 'unknown'> {
    const deadline = performance.now() + timeoutMs
    const retryMs = Math.min(EARLY_RETRY_MS, timeoutMs / 5)
    while (!this.controller.signal.aborted) {
      const pinging = new AbortController()
      let verdict: 'answered' | 'unknown' | undefined
      let failedEarly = false
      const pinged = this.init.ping(exit, { signal: AbortSignal.any([pinging.signal, this.controller.signal]) })
        .then(connected => { verdict = connected ? 'answered' : 'unknown' }, () => { failedEarly = !pinging.signal.aborted })
      let timer: NodeJS.Timeout | undefined
      await Promise.race([pinged, new Promise<void>(resolve => { timer = setTimeout(resolve, Math.max(0, deadline - performance.now())) })])
      clearTimeout(timer)
      if (verdict == null && !failedEarly) await sleep(LATE_ANSWER_GRACE_MS)
      pinging.abort()
      await pinged
      if (verdict != null) return verdict
      if (!failedEarly || deadline - performance.now() < retryMs) return 'silent'
      await sleep(retryMs)
    }
    return 'unknown'
  }

  private avoid (id: string): void {
    const now = performance.now()
    const before = this.avoidedExits.get(id)
    // gone again within MAX_AVOID_MS of the last time (an exit that comes and goes): longer; after that, from the start
    const ms = before != null && now < before.until + MAX_AVOID_MS ? Math.min(before.ms * 2, MAX_AVOID_MS) : (this.init.avoidMs ?? DEFAULT_AVOID_MS)
    this.avoidedExits.delete(id)
    if (this.avoidedExits.size >= MAX_AVOIDED) this.avoidedExits.delete(this.avoidedExits.keys().next().value!)
    this.avoidedExits.set(id, { until: now + ms, ms })
  }
}

async function sleep (ms: number): Promise<void> {
  await new Promise<void>(resolve => { setTimeout(resolve, ms) })
}
