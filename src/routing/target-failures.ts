/**
 * Whose fault is a failure that speaks of the target (it did not resolve,
 * refused, could not be reached, did not answer in time)? Usually the
 * target's: a scraper asking for dead hosts would otherwise count every one
 * against the exits that tried, and the exits that served it best would
 * sink below ones it never used. But an exit whose resolver or network is
 * broken fails the same way, for every target.
 *
 * Which targets are dead does not depend on the exit a request went
 * through, so every exit of a region sees about the same share of such
 * failures (the routing selector keeps a judge per requested region: a
 * crawl of one country's sites may find more of them dead than another's);
 * an exit that is broken sees far more. So an exit's target failures count
 * against it while its share of them (over its recent attempts) is well
 * above that of the other exits together: by TARGET_FAILURE_MARGIN, once
 * both have MIN_ATTEMPTS behind them. Shares decay with a half-life of
 * TARGET_FAILURE_HALF_LIFE_MS, so an exit that mends is judged afresh.
 *
 * (Asking whether another exit reached the same host would need the same
 * host twice, which a crawler rarely asks for, and an exit whose resolver
 * answers every name would vouch for names that do not exist.)
 */

import { hour } from '../constants.ts'
import { MAX_TRACKED_EXITS } from './constants.ts'

/** Failures that may be the target's rather than the exit's. */
export const TARGET_FAILURE_STATUSES: ReadonlySet<string> = new Set(['DNS_FAILED', 'CONNECT_REFUSED', 'UNREACHABLE', 'TIMEOUT'])

/** How much higher than the other exits' an exit's share of target failures must be to count against it. */
export const TARGET_FAILURE_MARGIN = 0.3

/** Attempts (decayed) an exit, and the others together, need before a share is judged. */
export const MIN_ATTEMPTS = 5

export const TARGET_FAILURE_HALF_LIFE_MS = hour

interface Counts {
  attempts: number
  targetFailures: number
  at: number
}

export class TargetFailureJudge {
  private readonly exits = new Map<string, Counts>()
  private readonly all: Counts = { attempts: 0, targetFailures: 0, at: 0 }
  private readonly lambda = Math.LN2 / TARGET_FAILURE_HALF_LIFE_MS

  /**
   * Records an attempt through `exit` (`status` undefined when it opened);
   * for a target failure, returns whether it counts against the exit.
   */
  record (exit: string, at: number, status?: string): boolean {
    const targetFailure = status != null && TARGET_FAILURE_STATUSES.has(status)
    let own = this.exits.get(exit)
    if (own == null) {
      own = { attempts: 0, targetFailures: 0, at }
      if (this.exits.size >= MAX_TRACKED_EXITS) this.forgetOldest()
    } else {
      this.exits.delete(exit) // re-inserted below: the map's order is the order of last use
    }
    this.exits.set(exit, own)
    this.decay(own, at)
    this.decay(this.all, at)
    // judged on what was known before this attempt, so one failure does not vouch for itself
    const counts = targetFailure && this.isOutlier(own)
    own.attempts++
    this.all.attempts++
    if (targetFailure) {
      own.targetFailures++
      this.all.targetFailures++
    }
    return counts
  }

  /** The exit's share of target failures, and the other exits' together (what record() judges by). */
  shares (exit: string, at: number): { own: number | undefined, others: number | undefined } {
    const own = this.exits.get(exit)
    if (own != null) this.decay(own, at)
    this.decay(this.all, at)
    const { own: ownShare, others } = this.sharesOf(own ?? { attempts: 0, targetFailures: 0, at })
    return { own: ownShare, others }
  }

  get size (): number {
    return this.exits.size
  }

  private isOutlier (own: Counts): boolean {
    const s = this.sharesOf(own)
    // (decay leaves five attempts of a few seconds ago at 4.999...: that is five)
    if (own.attempts < MIN_ATTEMPTS - 0.01 || s.othersAttempts < MIN_ATTEMPTS - 0.01) return false
    return s.own! - s.others! >= TARGET_FAILURE_MARGIN
  }

  /** The exit's share of target failures and the other exits' together, with the others' attempts (undefined: no attempts). */
  private sharesOf (own: Counts): { own: number | undefined, others: number | undefined, othersAttempts: number } {
    const othersAttempts = this.all.attempts - own.attempts
    return {
      own: own.attempts > 0 ? own.targetFailures / own.attempts : undefined,
      // float rounding of the decayed sums can leave the others a hair below zero
      others: othersAttempts > 0 ? Math.max(0, this.all.targetFailures - own.targetFailures) / othersAttempts : undefined,
      othersAttempts
    }
  }

  private decay (c: Counts, at: number): void {
    if (at <= c.at) return
    const f = Math.exp(-this.lambda * (at - c.at))
    c.attempts *= f
    c.targetFailures *= f
    c.at = at
  }

  /** Drops the least recently used exit, and its counts from the total. */
  private forgetOldest (): void {
    const [key, c] = this.exits.entries().next().value!
    this.exits.delete(key)
    this.decay(c, this.all.at)
    this.all.attempts = Math.max(0, this.all.attempts - c.attempts)
    this.all.targetFailures = Math.max(0, this.all.targetFailures - c.targetFailures)
  }
}
