/**
 * What this node saw of the exits it used, for its own reputation reports:
 * per exit, the tunnels it opened and those it failed through its own
 * fault, in hourly buckets over the last REPUTATION_WINDOW_MS.
 *
 * Only the exit's doing counts against it: not reached or no answer in
 * time (NO_ANSWER), busy, over its quota, outside its schedule, or a stream
 * that broke off. A target that refused, did not resolve, timed out from
 * the exit (TIMEOUT) or was denied by policy, a consumer out of credit or
 * over its rate, and a client that gave up say nothing of the exit, and
 * are left out.
 */

import { REPUTATION_WINDOW_MS } from './constants.ts'
import { hour } from '../constants.ts'

/** Tunnel statuses that are the exit's failure (the rest of TunnelStatus is not). */
const EXIT_FAULTS = new Set(['BUSY', 'QUOTA_EXCEEDED', 'OUTSIDE_SCHEDULE', 'NO_ANSWER'])
/** Tunnel statuses that are not: the target's, the consumer's or the request's doing. */
const NOT_THE_EXIT = new Set(['OK', 'POLICY_DENIED', 'DNS_FAILED', 'UNREACHABLE', 'CONNECT_REFUSED', 'TIMEOUT', 'RATE_LIMITED', 'INSUFFICIENT_CREDIT', 'BAD_REQUEST', 'AbortError',
  // an exit stopping as its operator asked (tunnel-client's EXIT_STOPPING): planned, not a failure
  'EXIT_STOPPING'])

/** Whether a failed tunnel with `status` (a TunnelStatus, or an error's name) counts against the exit. */
export function isExitFault (status: string | undefined): boolean {
  return status == null || EXIT_FAULTS.has(status) || !NOT_THE_EXIT.has(status)
}

const BUCKETS = Math.ceil(REPUTATION_WINDOW_MS / hour)

interface Seen {
  /** Hour number (ms / hour) of each bucket, and its counts. */
  hours: number[]
  successes: number[]
  failures: number[]
  /** Whether something was observed since the last report, and when that was. */
  changed: boolean
  reportedAt: number
}

export interface ObservedExit { exit: string, successes: number, failures: number, windowSeconds: number }

export class ReputationObserver {
  /** By exit peer id, least recently observed first. */
  private readonly exits = new Map<string, Seen>()

  constructor (private readonly maxExits = 10_000) {}

  observe (exit: string, ok: boolean, status: string | undefined, at: number): void {
    if (!ok && !isExitFault(status)) return
    let s = this.exits.get(exit)
    this.exits.delete(exit)
    if (s == null) {
      s = { hours: [], successes: [], failures: [], changed: true, reportedAt: -Infinity }
      if (this.exits.size >= this.maxExits) this.exits.delete(this.exits.keys().next().value!)
    }
    this.exits.set(exit, s)
    const h = Math.floor(at / hour)
    // a clock set back counts into the newest bucket: the buckets stay in order
    if (s.hours.length === 0 || h > s.hours.at(-1)!) {
      s.hours.push(h)
      s.successes.push(0)
      s.failures.push(0)
    }
    const i = s.hours.length - 1
    if (ok) s.successes[i]++
    else s.failures[i]++
    s.changed = true
  }

  /**
   * What to report now: each exit with something observed since its last
   * report (and at least `gapMs` after it), counted over the window that
   * ends now. Marks them reported.
   */
  due (now: number, gapMs: number): ObservedExit[] {
    const out: ObservedExit[] = []
    const first = Math.floor(now / hour) - BUCKETS + 1
    for (const [exit, s] of this.exits) {
      while (s.hours.length > 0 && s.hours[0] < first) {
        s.hours.shift()
        s.successes.shift()
        s.failures.shift()
      }
      if (s.hours.length === 0) {
        this.exits.delete(exit)
        continue
      }
      if (!s.changed || now - s.reportedAt < gapMs) continue
      const successes = s.successes.reduce((a, b) => a + b, 0)
      const failures = s.failures.reduce((a, b) => a + b, 0)
      const windowSeconds = Math.max(1, Math.min(REPUTATION_WINDOW_MS, now - s.hours[0] * hour) / 1000 | 0)
      s.reportedAt = now
      s.changed = false
      out.push({ exit, successes, failures, windowSeconds })
    }
    return out
  }
}
