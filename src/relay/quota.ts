/**
 * Daily and monthly data quotas of an exit, in local calendar days and
 * months, persisted in the data directory so a restart does not reset them.
 * Counts are flushed every few seconds, on stop (atomic write + rename),
 * and, while a quota is set, every FLUSH_BYTES counted: a crash loses at
 * most that much of the count (at 5 s alone, a killed exit forgot 0.2 to
 * 0.7 GB of its day, and could carry that much past its quota each time).
 */

import { readFileSync } from 'node:fs'
import { writeJsonAtomically } from './json-file.ts'

export interface QuotaInit {
  /** Bytes per local calendar day, both directions; 0 = unlimited. */
  dailyBytes: number
  /** Bytes per local calendar month; 0 = unlimited. */
  monthlyBytes: number
  /** JSON file the counters live in; none = in memory only. */
  file?: string
  now?: () => Date
}

interface QuotaState { day: string, dayBytes: number, month: string, monthBytes: number }

/** Counted bytes after which the counters are written at once while a quota is set (see needsFlush). */
export const FLUSH_BYTES = 64 * 1024 * 1024

export type QuotaPeriod = 'daily' | 'monthly'

function dayKey (d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`
}

const DAY = /^\d{4}-\d{2}-\d{2}$/
const MONTH = /^\d{4}-\d{2}$/
/** A whole number of bytes an exit could have counted: 1e30, or 1.5, is a hand edit or damage. */
const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0

/**
 * The counters as saved, all four fields checked. Anything else is refused
 * rather than read as no usage: a file with a counter missing, spelled as
 * a string or negative would otherwise restart the day's and month's count
 * at 0 and let the exit carry a second quota's worth.
 */
function checkSavedState (file: string, saved: any): QuotaState {
  const problem = stateProblem(saved)
  if (problem != null) throw new Error(`${file}: cannot read exit usage counters (${problem}); move the file away to start counting afresh`)
  return { day: saved.day, dayBytes: saved.dayBytes, month: saved.month, monthBytes: saved.monthBytes }
}

function stateProblem (saved: any): string | undefined {
  if (saved == null || typeof saved !== 'object' || Array.isArray(saved)) return 'not a JSON object'
  const shown = (v: unknown): string => v === undefined ? 'missing' : JSON.stringify(v)
  if (typeof saved.day !== 'string' || !DAY.test(saved.day)) return `"day" is ${shown(saved.day)}, not a YYYY-MM-DD date`
  if (typeof saved.month !== 'string' || !MONTH.test(saved.month)) return `"month" is ${shown(saved.month)}, not a YYYY-MM month`
  if (!isCount(saved.dayBytes)) return `"dayBytes" is ${shown(saved.dayBytes)}, not a byte count`
  if (!isCount(saved.monthBytes)) return `"monthBytes" is ${shown(saved.monthBytes)}, not a byte count`
  return undefined
}

export class QuotaTracker {
  private state: QuotaState
  private dirty = false
  private readonly now: () => Date
  /** Local midnight after the current day: until then roll() has nothing to do (it runs per chunk). */
  private nextRoll = 0
  private unflushed = 0

  constructor (private readonly init: QuotaInit) {
    this.now = init.now ?? (() => new Date())
    const d = this.now()
    this.state = { day: dayKey(d), dayBytes: 0, month: dayKey(d).slice(0, 7), monthBytes: 0 }
    if (init.file != null) {
      let saved: unknown
      try {
        saved = JSON.parse(readFileSync(init.file, 'utf8'))
      } catch (err: any) {
        if (err.code !== 'ENOENT') throw new Error(`${init.file}: cannot read exit usage counters (${err.message}); move the file away to start counting afresh`)
      }
      if (saved !== undefined) this.state = checkSavedState(init.file, saved)
    }
    this.roll()
  }

  /** Starts new counters when the local day or month has changed. */
  private roll (): void {
    const now = this.init.now != null ? this.init.now() : undefined
    const t = now?.getTime() ?? Date.now()
    if (t < this.nextRoll && t >= this.nextRoll - 25 * 60 * 60 * 1000) return
    const d = now ?? new Date(t)
    this.nextRoll = new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1).getTime()
    const day = dayKey(d)
    const month = day.slice(0, 7)
    if (this.state.month !== month) { this.state.month = month; this.state.monthBytes = 0; this.dirty = true }
    if (this.state.day !== day) { this.state.day = day; this.state.dayBytes = 0; this.dirty = true }
  }

  add (bytes: number): void {
    this.roll()
    this.state.dayBytes += bytes
    this.state.monthBytes += bytes
    this.dirty = true
    this.unflushed += bytes
  }

  /** Whether FLUSH_BYTES or more were counted since the last flush, with a quota set and a file to keep it in. */
  needsFlush (): boolean {
    return this.unflushed >= FLUSH_BYTES && this.init.file != null && (this.init.dailyBytes > 0 || this.init.monthlyBytes > 0)
  }

  /** Which quota is used up; the monthly one when both are, since it keeps the exit closed past the day's turn. */
  exceeded (): QuotaPeriod | undefined {
    this.roll()
    if (this.init.monthlyBytes > 0 && this.state.monthBytes >= this.init.monthlyBytes) return 'monthly'
    if (this.init.dailyBytes > 0 && this.state.dayBytes >= this.init.dailyBytes) return 'daily'
    return undefined
  }

  usage (): Readonly<QuotaState> & { dailyLimit: number, monthlyLimit: number } {
    this.roll()
    return { ...this.state, dailyLimit: this.init.dailyBytes, monthlyLimit: this.init.monthlyBytes }
  }

  flush (): void {
    if (!this.dirty || this.init.file == null) return
    // counted as flushed whether or not the write works: a failing disk is retried on the timer, not on every chunk
    this.unflushed = 0
    writeJsonAtomically(this.init.file, this.state)
    this.dirty = false
  }
}
