/**
 * Whose fault is a failure that speaks of the target (it did not resolve,
 * refused, could not be reached, did not answer in time)? Usually the
 * target's: a scraper asking for dead hosts would otherwise count every one
 * against the exits that tried, and the exits that served it best would
 * sink below ones it never used. But an exit whose resolver or network is
 * broken fails the same way, for every target.
 *
 * So such a failure counts against an exit only when another exit reached
 * the same target (host and port) within TARGET_EVIDENCE_WINDOW_MS, before
 * or after: then the target was up, and this exit could not get to it. A
 * failure with no such evidence yet waits (bounded) for a later success
 * elsewhere; what never gets any is let go. Maps are bounded; the oldest
 * target is forgotten first.
 */

import { minute } from '../constants.ts'

/** Failures that may be the target's rather than the exit's. */
export const TARGET_FAILURE_STATUSES: ReadonlySet<string> = new Set(['DNS_FAILED', 'CONNECT_REFUSED', 'UNREACHABLE', 'TIMEOUT'])

/** How far apart a success through one exit and a failure through another may be to count as evidence. */
export const TARGET_EVIDENCE_WINDOW_MS = 10 * minute

/** Targets remembered at most (successes and waiting failures each). */
export const MAX_TARGETS = 4096

/** Failures waiting for evidence, per target. */
const MAX_WAITING_PER_TARGET = 8

export interface TargetFailure {
  exit: string
  at: number
  status: string
}

export class TargetFailureJudge {
  /** Per target, the last success per exit (a few exits). */
  private readonly reached = new Map<string, Map<string, number>>()
  private readonly waiting = new Map<string, TargetFailure[]>()

  /** A failure through `exit`: true when it counts against the exit now. */
  failure (target: string, failure: TargetFailure): boolean {
    const reached = this.reached.get(target)
    if (reached != null) {
      for (const [exit, at] of reached) {
        if (exit !== failure.exit && Math.abs(at - failure.at) <= TARGET_EVIDENCE_WINDOW_MS) return true
      }
    }
    const list = this.waiting.get(target) ?? []
    list.push(failure)
    if (list.length > MAX_WAITING_PER_TARGET) list.shift()
    touch(this.waiting, target, list)
    return false
  }

  /** A tunnel through `exit` reached `target`: returns the waiting failures of other exits that now count. */
  success (target: string, exit: string, at: number): TargetFailure[] {
    const reached = this.reached.get(target) ?? new Map<string, number>()
    reached.delete(exit)
    reached.set(exit, at)
    // a few exits are evidence enough; the oldest goes
    if (reached.size > MAX_WAITING_PER_TARGET) reached.delete(reached.keys().next().value!)
    touch(this.reached, target, reached)
    const list = this.waiting.get(target)
    if (list == null) return []
    const counted = list.filter(f => f.exit !== exit && Math.abs(at - f.at) <= TARGET_EVIDENCE_WINDOW_MS)
    const kept = list.filter(f => f.exit === exit && at - f.at <= TARGET_EVIDENCE_WINDOW_MS)
    if (kept.length > 0) this.waiting.set(target, kept)
    else this.waiting.delete(target)
    return counted
  }

  /** Targets remembered (for tests and bounds). */
  get size (): { reached: number, waiting: number } {
    return { reached: this.reached.size, waiting: this.waiting.size }
  }
}

/** Sets `key` as the newest entry, dropping the oldest beyond MAX_TARGETS. */
function touch<V> (map: Map<string, V>, key: string, value: V): void {
  map.delete(key)
  map.set(key, value)
  if (map.size > MAX_TARGETS) map.delete(map.keys().next().value!)
}
