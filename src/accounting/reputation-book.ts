/**
 * What this node makes of the reputation reports it holds: a score in
 * 0..1 per exit for the selector (0.5, neutral, when nothing counts).
 *
 * A signature only says who speaks, and identities are cheap, so a report
 * weighs what its reporter paid the exit, as this node's ledger sees it:
 * nothing for a reporter that never paid the exit (an exit cannot praise
 * itself through keys of its own that never spent anything on it, nor a
 * rival run down an exit it never used), in proportion up to
 * REPUTATION_FULL_WEIGHT_MICRO, and no more above it (credit cycled
 * round a sybil ring buys no more than one reporter's say per key that
 * paid). Reports older than REPUTATION_WINDOW_MS no longer count.
 *
 * score = (1 + Σ w·s/(s+f)) / (2 + Σ w): a Beta prior of one success and
 * one failure, so one full-weight reporter moves an exit from 0.5 to at
 * most 0.67 or at least 0.33, and ten to 0.92 or 0.08.
 */

import { MAX_CLOCK_AHEAD_MS, REPUTATION_WINDOW_MS, MIN_REPUTATION_REPORT_GAP_MS } from './constants.ts'
import { second } from '../constants.ts'
import type { SignedReport } from './reputation.ts'
import type { StoredReport } from './ledger.ts'

/** Where held reports are kept across restarts (the ledger). */
export interface ReportStore {
  putReport: (r: StoredReport) => void
  dropReport: (subject: Uint8Array, reporter: Uint8Array) => void
  dropReportsBefore: (before: number) => void
  /** Oldest first. */
  reports: (since: number) => StoredReport[]
}

export interface ReputationBookInit {
  /** How much `reporter`'s word on `subject` weighs, 0..1. */
  weightOf: (reporter: Uint8Array, subject: Uint8Array) => number
  /**
   * Keeps what the book holds, and gives it back to a new book (after a
   * restart). Best effort: a store that fails (a full disk) leaves the
   * report held in memory and counted all the same.
   */
  store?: ReportStore
  /** Reports held at most; the least recently updated goes first. @default 10_000 */
  maxReports?: number
  /** @default Date.now */
  now?: () => number
}

/** What consider() made of a verified report. */
export type Consideration =
  /** held, newer than what the reporter said before */
  | 'new'
  /** the same report again, or an older one */
  | 'duplicate'
  /** newer, but within MIN_REPUTATION_REPORT_GAP_MS of the held one */
  | 'too-soon'
  /** older than REPUTATION_WINDOW_MS, or dated more than MAX_CLOCK_AHEAD_MS ahead of our clock */
  | 'out-of-window'
  /** the reporter paid the exit nothing we know of: it would weigh nothing */
  | 'weightless'

interface Held { reporter: Uint8Array, subject: Uint8Array, issuedAt: number, successes: number, failures: number }

/** A subject's score is worked out again at most this often (a weight is a ledger query). */
const SCORE_TTL_MS = 30 * second
const PRIOR = 1

const hexOf = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')

export class ReputationBook {
  /** By `subject/reporter`, least recently updated first. */
  private readonly reports = new Map<string, Held>()
  /** Keys of `reports` by subject. */
  private readonly bySubject = new Map<string, Set<string>>()
  private readonly scores = new Map<string, { at: number, score: number | undefined }>()
  private readonly now: () => number

  constructor (private readonly init: ReputationBookInit) {
    this.now = init.now ?? Date.now
    const since = this.now() - REPUTATION_WINDOW_MS
    const store = init.store
    if (store == null) return
    try {
      store.dropReportsBefore(since)
      // oldest first, as consider() would have held them; weights are asked again at score time
      for (const r of store.reports(since)) this.hold(r, false)
    } catch {
      // a store that cannot be read starts the book empty, as before there was one
    }
  }

  get size (): number {
    return this.reports.size
  }

  /** Takes a report whose signature has been checked (verifyReport). */
  consider (r: SignedReport): Consideration {
    const now = this.now()
    const issuedAt = Number(r.issuedAt)
    if (now - issuedAt > REPUTATION_WINDOW_MS || issuedAt - now > MAX_CLOCK_AHEAD_MS) return 'out-of-window'
    const subject = hexOf(r.subject)
    const key = `${subject}/${hexOf(r.reporter)}`
    const held = this.reports.get(key)
    if (held != null && issuedAt <= held.issuedAt) return 'duplicate'
    if (held != null && issuedAt - held.issuedAt < MIN_REPUTATION_REPORT_GAP_MS) return 'too-soon'
    if (!(this.init.weightOf(r.reporter, r.subject) > 0)) return 'weightless'
    this.hold({ reporter: Uint8Array.from(r.reporter), subject: Uint8Array.from(r.subject), issuedAt, successes: r.successes, failures: r.failures }, true)
    return 'new'
  }

  /** Holds `h` as the newest report of its exit and reporter (and stores it, unless it came from the store). */
  private hold (h: Held, store: boolean): void {
    const subject = hexOf(h.subject)
    const key = `${subject}/${hexOf(h.reporter)}`
    this.reports.delete(key)
    this.reports.set(key, h)
    let keys = this.bySubject.get(subject)
    if (keys == null) this.bySubject.set(subject, keys = new Set())
    keys.add(key)
    this.scores.delete(subject)
    if (store) this.persist(s => { s.putReport(h) })
    while (this.reports.size > (this.init.maxReports ?? 10_000)) this.drop(this.reports.keys().next().value!)
  }

  private persist (write: (store: ReportStore) => void): void {
    if (this.init.store == null) return
    try {
      write(this.init.store)
    } catch {
      // best effort (see ReputationBookInit.store): held in memory all the same
    }
  }

  private drop (key: string): void {
    const subject = key.slice(0, key.indexOf('/'))
    const held = this.reports.get(key)
    if (held != null) this.persist(s => { s.dropReport(held.subject, held.reporter) })
    this.reports.delete(key)
    const keys = this.bySubject.get(subject)
    keys?.delete(key)
    if (keys?.size === 0) this.bySubject.delete(subject)
    this.scores.delete(subject)
  }

  /** The exit's score, 0..1; undefined when no report on it counts. */
  score (subject: Uint8Array): number | undefined {
    const s = hexOf(subject)
    const now = this.now()
    const cached = this.scores.get(s)
    if (cached != null && now - cached.at < SCORE_TTL_MS) return cached.score
    let weight = 0
    let good = 0
    for (const key of [...(this.bySubject.get(s) ?? [])]) {
      const r = this.reports.get(key)!
      if (now - r.issuedAt > REPUTATION_WINDOW_MS) {
        this.drop(key)
        continue
      }
      const w = Math.min(1, Math.max(0, this.init.weightOf(r.reporter, r.subject)))
      weight += w
      good += w * r.successes / (r.successes + r.failures)
    }
    const score = weight > 0 ? (PRIOR + good) / (2 * PRIOR + weight) : undefined
    this.scores.set(s, { at: now, score })
    return score
  }

  /** Reports held on `subject` that count now, for `providers`. */
  reporters (subject: Uint8Array): number {
    const now = this.now()
    let n = 0
    for (const key of this.bySubject.get(hexOf(subject)) ?? []) {
      if (now - this.reports.get(key)!.issuedAt <= REPUTATION_WINDOW_MS) n++
    }
    return n
  }
}
