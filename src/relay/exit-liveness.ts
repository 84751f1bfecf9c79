/**
 * Finds exits that stopped answering without closing their connections: a
 * home line that dropped, a host that hung or slept. TCP keeps such a
 * connection up, libp2p's connection monitor gives a ping a minute
 * (PING_TIMEOUT_FLOOR, see node/libp2p.ts) before it ends it, and until
 * then every tunnel asked of the exit waited out the whole response
 * timeout (15 s) before the next exit was tried: measured with a stopped
 * exit process, two requests of six took 15 s each.
 *
 * Here, once a tunnel set-up has waited `suspectAfterMs` for its answer
 * (an exit answers only once its connect to the target is done, which may
 * take seconds: that alone says nothing), the exit is pinged, one check
 * per exit at a time. A live exit answers a ping at once, unless its
 * answer queues behind tunnel data it is sending us, or waits on a loop
 * busy with a burst of set-ups, and then we hear that data, or those
 * answers. So an exit that neither answers within `pingTimeoutMs` nor sent
 * a byte or an answer meanwhile is taken for gone: its connections are ended, which fails
 * every set-up waiting on it at once (they move on to the next exit), and
 * it is tried last for a while (`avoidMs`, doubling while it stays gone),
 * until a tunnel through it works again. Open tunnels that have had
 * nothing from their exit for `silentAfterMs` get it checked the same way
 * (a download from an exit that went away stalled until the connection
 * monitor gave up, a minute later, or until the client's own timeout).
 */

import type { AbortOptions, Logger, PeerId } from '@libp2p/interface'
import { minute, second } from '../constants.ts'

export const DEFAULT_SUSPECT_AFTER_MS = 3 * second
export const DEFAULT_PING_TIMEOUT_MS = 5 * second
export const DEFAULT_AVOID_MS = 30 * second
/** Open tunnels that have had nothing from their exit this long get it checked too (see silentExits). */
export const DEFAULT_SILENT_AFTER_MS = 10 * second
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
  /** Pings the exit on its connection; rejects when the signal aborts first. */
  ping: (exit: PeerId, options: AbortOptions) => Promise<unknown>
  /** Whether any tunnel to the exit moved bytes after `since` (performance.now() ms): see Ingress.heardSince. */
  heardSince: (exit: PeerId, since: number) => boolean
  /** Ends every connection to the exit, with `reason`. */
  drop: (exit: PeerId, reason: Error) => void
  log: Logger
  /** @default DEFAULT_SUSPECT_AFTER_MS */
  suspectAfterMs?: number
  /** @default DEFAULT_PING_TIMEOUT_MS */
  pingTimeoutMs?: number
  /** @default DEFAULT_AVOID_MS */
  avoidMs?: number
  /**
   * The exits whose open tunnels have all had nothing from them for `ms`:
   * start() checks each, at most once per `silentAfterMs`, so a download
   * from an exit that went away is reset in seconds rather than stalled
   * until the connection monitor's minute is up.
   */
  silentExits?: (ms: number) => PeerId[]
  /** @default DEFAULT_SILENT_AFTER_MS */
  silentAfterMs?: number
}

interface Avoided { until: number, ms: number }

export class ExitLiveness {
  /** Exit ids whose check is under way. */
  private readonly checking = new Set<string>()
  /** By exit id, in the order they were found gone. */
  private readonly avoidedExits = new Map<string, Avoided>()
  private readonly timers = new Set<NodeJS.Timeout>()
  /** When each exit last answered a tunnel request (performance.now() ms), for the exits being checked. */
  private readonly lastAnswer = new Map<string, number>()
  private readonly controller = new AbortController()
  /** When each silent exit was last checked (performance.now() ms). */
  private readonly silentChecked = new Map<string, number>()
  private sweepTimer?: NodeJS.Timeout
  /** Exits found gone since start, for status. */
  dropped = 0

  constructor (private readonly init: ExitLivenessInit) {}

  /** Starts checking the exits of silent tunnels (init.silentExits), if given. */
  start (): void {
    const silentExits = this.init.silentExits
    if (silentExits == null || this.sweepTimer != null) return
    const silentMs = this.init.silentAfterMs ?? DEFAULT_SILENT_AFTER_MS
    this.sweepTimer = setInterval(() => {
      const now = performance.now()
      for (const [id, at] of this.silentChecked) if (now - at >= silentMs) this.silentChecked.delete(id)
      for (const exit of silentExits(silentMs)) {
        const id = exit.toString()
        // one found gone just now: its connections are ended, and its tunnels with them
        if (this.silentChecked.has(id) || this.avoided(exit)) continue
        this.silentChecked.set(id, now)
        void this.check(exit)
      }
    }, silentMs / 2)
    this.sweepTimer.unref()
  }

  /**
   * A tunnel set-up is waiting on `exit`: checks it if the wait grows to
   * `suspectAfterMs`. Call the returned function once the answer (or the
   * failure) is in.
   */
  watch (exit: PeerId): () => void {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      void this.check(exit)
    }, this.init.suspectAfterMs ?? DEFAULT_SUSPECT_AFTER_MS)
    timer.unref()
    this.timers.add(timer)
    return () => {
      clearTimeout(timer)
      this.timers.delete(timer)
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

  private async check (exit: PeerId): Promise<void> {
    const id = exit.toString()
    if (this.checking.has(id) || this.controller.signal.aborted) return
    this.checking.add(id)
    const since = performance.now()
    const timeoutMs = this.init.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS
    try {
      if (await this.answers(exit, timeoutMs) || this.heardSince(exit, id, since) || this.controller.signal.aborted) return
      const reason = new ExitUnresponsiveError(`exit ${id} did not answer a ping within ${timeoutMs} ms, nor send anything meanwhile`)
      this.avoid(id)
      this.dropped++
      this.init.log('%s: ending its connections and trying it last for %d s', reason.message, Math.round(this.avoidedExits.get(id)!.ms / 1000))
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
   * Whether a ping got its answer within `timeoutMs` (and the grace for an
   * answer the loop had not read yet). A ping that fails before its time
   * (no stream to be had just now) is tried again, every EARLY_RETRY_MS:
   * only silence for the whole time counts.
   */
  private async answers (exit: PeerId, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs
    while (!this.controller.signal.aborted) {
      const left = deadline - performance.now()
      const pinging = new AbortController()
      let answered = false
      let failedEarly = false
      const pinged = this.init.ping(exit, { signal: AbortSignal.any([pinging.signal, this.controller.signal]) })
        .then(() => { answered = true }, () => { failedEarly = !pinging.signal.aborted })
      let timer: NodeJS.Timeout | undefined
      await Promise.race([pinged, new Promise<void>(resolve => { timer = setTimeout(resolve, Math.max(0, left)) })])
      clearTimeout(timer)
      if (!answered && !failedEarly) await sleep(LATE_ANSWER_GRACE_MS)
      pinging.abort()
      await pinged
      if (answered) return true
      const retryMs = Math.min(EARLY_RETRY_MS, timeoutMs / 5)
      if (!failedEarly || deadline - performance.now() < retryMs) return false
      await sleep(retryMs)
    }
    return false
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
