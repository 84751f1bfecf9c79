/**
 * Rate shaping with token buckets. A bucket lets a sender go into debt for
 * the chunk it already has and answers how long to hold off, so a pump can
 * forward every chunk at once and then pause its source: the long-run rate
 * is exact and no chunk is ever split or queued here.
 */

import { MiB, KiB, second } from '../constants.ts'

export type Clock = () => number

/** Megabits per second to bytes per second. */
export function mbpsToBytesPerSecond (mbps: number): number {
  return mbps * 1_000_000 / 8
}

export interface TokenBucketInit {
  /** Sustained rate, bytes per second. */
  rate: number
  /** Bytes that may pass at once after an idle spell. @default max(64 KiB, rate / 10) */
  burst?: number
  /** Milliseconds, monotonic. @default performance.now */
  now?: Clock
}

export class TokenBucket {
  readonly rate: number
  readonly burst: number
  private tokens: number
  private last: number
  private readonly now: Clock

  constructor (init: TokenBucketInit) {
    if (!(init.rate > 0)) throw new RangeError(`token bucket rate must be > 0, got ${init.rate}`)
    this.rate = init.rate
    // a chunk larger than this (the exit reads targets 256 KiB at a time, see
    // bulk-read.ts; a 64 KiB read elsewhere) goes into debt and its pump holds
    // for it: the long-run rate stays exact, the holds come less often and last longer
    this.burst = init.burst ?? Math.max(64 * KiB, init.rate / 10)
    this.now = init.now ?? (() => performance.now())
    this.tokens = this.burst
    this.last = this.now()
  }

  private refill (): void {
    const t = this.now()
    this.tokens = Math.min(this.burst, this.tokens + (t - this.last) * this.rate / second)
    this.last = t
  }

  /** Takes `bytes` (possibly going into debt); returns the milliseconds to wait before sending more. */
  consume (bytes: number): number {
    this.refill()
    this.tokens -= bytes
    return this.tokens >= 0 ? 0 : Math.ceil(-this.tokens * second / this.rate)
  }

  /** Takes `bytes` only if they are available now. */
  tryTake (bytes: number): boolean {
    this.refill()
    if (this.tokens < bytes) return false
    this.tokens -= bytes
    return true
  }

  /** Adds tokens earned otherwise than by time, up to the burst (no clock read: callers may be on the data path). */
  add (tokens: number): void {
    this.tokens = Math.min(this.burst, this.tokens + tokens)
  }

  get available (): number {
    this.refill()
    return this.tokens
  }
}

/** Several buckets that all apply (e.g. the exit total and one consumer's share). */
export function consumeAll (buckets: ReadonlyArray<TokenBucket | undefined>, bytes: number): number {
  let wait = 0
  for (const b of buckets) if (b != null) wait = Math.max(wait, b.consume(bytes))
  return wait
}

export const UNLIMITED_RATE = 0
export const DEFAULT_BURST = 1 * MiB
