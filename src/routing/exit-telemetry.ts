/**
 * What a consumer learned from its own tunnels through each exit, turned
 * into a prediction of how the exit will do at a given time.
 *
 * Ads say what an exit offers; only measurements say what it delivers. For
 * each exit this keeps exponentially decayed averages — every sample's
 * weight halves each half-life, e^(-ln2/HL·t) — of throughput, time to
 * first byte and failures. The decayed weight doubles as the effective
 * sample count: it says how much, and how recent, the evidence is, while
 * the average (sum over weight) keeps the value of the latest samples.
 *
 * Home uplinks have rhythms: an exit on a family's line is fast at 10:00
 * and slow at 20:00 when everyone streams. A one-hour half-life forgets the
 * evening by the next morning, so throughput also goes into one of 168
 * hour-of-week buckets (UTC) that decay over a week. A prediction for time
 * `at` blends the bucket of `at` with the overall average; the overall
 * average counts as at most PROFILE_PRIOR_WEIGHT samples, so it fills in
 * for hours with little data and is outvoted where the bucket has plenty.
 * An exit that is slow every Tuesday evening is predicted slow on Tuesday
 * evenings and nowhere else.
 *
 * Failure rates are the mean of a Beta posterior (prior PRIOR_SUCCESSES /
 * PRIOR_FAILURES), so one failed attempt does not brand a new exit as
 * always failing, nor one success as perfect.
 *
 * Pure: no clock and no I/O. Every method takes the time of the event.
 */

import { hour } from '../constants.ts'
import {
  CONFIDENCE_HALF_SAMPLES, FULL_THROUGHPUT_SAMPLE_BYTES, HOURS_PER_WEEK, MAX_TRACKED_EXITS, NEUTRAL_FAILURE_STATUSES,
  PRIOR_FAILURES, PRIOR_SUCCESSES, PROFILE_HALF_LIFE, PROFILE_PRIOR_WEIGHT, TELEMETRY_HALF_LIFE
} from './constants.ts'

export interface SuccessSample {
  /** When the transfer ended, ms since the epoch. */
  at: number
  /** Bytes carried (both directions). */
  bytes: number
  /** Time spent moving those bytes, ms. */
  durationMs: number
  /** Time from the tunnel request to the first byte from the target, ms. */
  ttfbMs?: number
}

export interface FailureSample {
  at: number
  /** Tunnel status (`TIMEOUT`, `BUSY`, ...) or dial error name. */
  status?: string
}

/** How an exit is expected to do at one moment. */
export interface Prediction {
  /** Bytes/s the exit delivered at this hour of the week; undefined if never measured. */
  bandwidth?: number
  /** Undefined if never measured. */
  ttfbMs?: number
  /** Posterior mean probability that an attempt fails, 0..1. */
  failureRate: number
  /** 0 (nothing known) .. 1 (much recent evidence). */
  confidence: number
  /** Decayed counts of successful and failed attempts (without the prior). */
  successes: number
  failures: number
  /** Effective samples behind `bandwidth` and `ttfbMs`; spreads of exploration draws shrink with them. */
  bandwidthSamples: number
  ttfbSamples: number
}

/** Anything that predicts exits: ExitTelemetry, or a stub in tests and simulations. */
export interface TelemetrySource {
  predict: (exit: string, at: number) => Prediction
}

export interface ExitTelemetryInit {
  /** @default TELEMETRY_HALF_LIFE (1 h) */
  halfLife?: number
  /** @default PROFILE_HALF_LIFE (7 days) */
  profileHalfLife?: number
  /** @default MAX_TRACKED_EXITS */
  maxExits?: number
}

/** A decayed sum and weight; the average is sum / weight. */
interface Decayed {
  sum: number
  weight: number
  /** Time both were last decayed to. */
  at: number
}

interface ExitState {
  throughput: Decayed
  ttfb: Decayed
  /** Average of 1 per failure, 0 per success: mean is the failure rate, weight the attempts. */
  failures: Decayed
  /** Throughput per hour of the week; only hours with samples have an entry. */
  profile: Map<number, Decayed>
}

/** Below this a decayed weight is noise; the average starts over from the next sample. */
const NEGLIGIBLE_WEIGHT = 1e-9

/** The epoch, 1970-01-01, was a Thursday: 4 days after a Sunday. */
const EPOCH_HOUR_OF_WEEK = 4 * 24

/** Hour of the week in UTC, 0 = Sunday 00:00-00:59, 167 = Saturday 23:00-23:59. */
export function hourOfWeek (at: number): number {
  const h = (Math.floor(at / hour) + EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK
  return h < 0 ? h + HOURS_PER_WEEK : h
}

/** The prediction for an exit nobody measured: shared, so unknown exits cost no allocation. */
export const UNKNOWN_PREDICTION: Readonly<Prediction> = Object.freeze({
  failureRate: PRIOR_FAILURES / (PRIOR_SUCCESSES + PRIOR_FAILURES),
  confidence: 0,
  successes: 0,
  failures: 0,
  bandwidthSamples: 0,
  ttfbSamples: 0
})

export class ExitTelemetry implements TelemetrySource {
  private readonly exits = new Map<string, ExitState>()
  /** Decay rates ln2 / half-life, per ms. */
  private readonly lambda: number
  private readonly profileLambda: number
  private readonly maxExits: number

  constructor (init: ExitTelemetryInit = {}) {
    this.lambda = Math.LN2 / (init.halfLife ?? TELEMETRY_HALF_LIFE)
    this.profileLambda = Math.LN2 / (init.profileHalfLife ?? PROFILE_HALF_LIFE)
    this.maxExits = init.maxExits ?? MAX_TRACKED_EXITS
  }

  /** Exits with telemetry. */
  get size (): number {
    return this.exits.size
  }

  /** A tunnel through `exit` carried `bytes` in `durationMs`. */
  recordSuccess (exit: string, sample: SuccessSample): void {
    const s = this.state(exit)
    addSample(s.failures, 0, 1, sample.at, this.lambda)
    if (isNonNegative(sample.ttfbMs)) addSample(s.ttfb, sample.ttfbMs, 1, sample.at, this.lambda)
    if (!(sample.bytes > 0 && sample.durationMs > 0)) return
    const bytesPerSecond = sample.bytes * 1000 / sample.durationMs
    // a short response measures latency more than bandwidth, so it counts less
    const weight = Math.min(1, sample.bytes / FULL_THROUGHPUT_SAMPLE_BYTES)
    addSample(s.throughput, bytesPerSecond, weight, sample.at, this.lambda)
    addSample(this.bucket(s, sample.at), bytesPerSecond, weight, sample.at, this.profileLambda)
  }

  /** A tunnel through `exit` failed. Statuses the consumer caused are ignored. */
  recordFailure (exit: string, sample: FailureSample): void {
    if (sample.status != null && NEUTRAL_FAILURE_STATUSES.includes(sample.status)) return
    addSample(this.state(exit).failures, 1, 1, sample.at, this.lambda)
  }

  /** Drops everything known about `exit`, e.g. when its identity is banned. */
  forget (exit: string): void {
    this.exits.delete(exit)
  }

  predict (exit: string, at: number): Prediction {
    const s = this.exits.get(exit)
    if (s == null) return UNKNOWN_PREDICTION
    const attempts = weightAt(s.failures, at, this.lambda)
    const failures = attempts * mean(s.failures, 0)
    const bandwidth = this.blendedThroughput(s, at)
    const ttfbSamples = weightAt(s.ttfb, at, this.lambda)
    const evidence = Math.max(attempts, bandwidth.samples)
    return {
      bandwidth: bandwidth.value,
      ttfbMs: s.ttfb.weight > 0 ? mean(s.ttfb, 0) : undefined,
      failureRate: (failures + PRIOR_FAILURES) / (attempts + PRIOR_SUCCESSES + PRIOR_FAILURES),
      confidence: evidence / (evidence + CONFIDENCE_HALF_SAMPLES),
      successes: attempts - failures,
      failures,
      bandwidthSamples: bandwidth.samples,
      ttfbSamples
    }
  }

  /** The hour-of-week bucket blended with the overall average, which counts as at most PROFILE_PRIOR_WEIGHT samples. */
  private blendedThroughput (s: ExitState, at: number): { value?: number, samples: number } {
    const b = s.profile.get(hourOfWeek(at))
    const bucketWeight = b == null ? 0 : weightAt(b, at, this.profileLambda)
    const overallWeight = Math.min(PROFILE_PRIOR_WEIGHT, weightAt(s.throughput, at, this.lambda))
    const total = bucketWeight + overallWeight
    if (total > 0) {
      const value = (bucketWeight * mean(b, 0) + overallWeight * mean(s.throughput, 0)) / total
      return { value, samples: total }
    }
    // the overall average decayed to nothing and this hour is empty: the
    // last known value is still the best guess, with no weight behind it
    return { value: s.throughput.weight > 0 ? mean(s.throughput, 0) : undefined, samples: 0 }
  }

  private bucket (s: ExitState, at: number): Decayed {
    const h = hourOfWeek(at)
    let b = s.profile.get(h)
    if (b == null) {
      b = emptyDecayed()
      s.profile.set(h, b)
    }
    return b
  }

  /** The state of `exit`, created if needed and moved to the back of the eviction order. */
  private state (exit: string): ExitState {
    let s = this.exits.get(exit)
    if (s != null) {
      this.exits.delete(exit)
    } else {
      s = { throughput: emptyDecayed(), ttfb: emptyDecayed(), failures: emptyDecayed(), profile: new Map() }
    }
    this.exits.set(exit, s)
    if (this.exits.size > this.maxExits) {
      // Map iterates in insertion order: the first key is the least recently updated
      this.exits.delete(this.exits.keys().next().value!)
    }
    return s
  }
}

function emptyDecayed (): Decayed {
  return { sum: 0, weight: 0, at: 0 }
}

function isNonNegative (x: number | undefined): x is number {
  return x != null && x >= 0 && Number.isFinite(x)
}

function mean (d: Decayed | undefined, fallback: number): number {
  return d == null || d.weight <= 0 ? fallback : d.sum / d.weight
}

/** The weight of `d` decayed to `at` (never grown: times before the last update count as the last update). */
function weightAt (d: Decayed, at: number, lambda: number): number {
  return d.weight * Math.exp(-lambda * Math.max(0, at - d.at))
}

/**
 * Adds value `x` with weight `w` at time `at`. Samples may arrive out of
 * order (transfers end in a different order than they start): a sample
 * older than the last update enters already decayed.
 */
function addSample (d: Decayed, x: number, w: number, at: number, lambda: number): void {
  if (!Number.isFinite(x) || !(w > 0) || !Number.isFinite(at)) return
  if (at < d.at && d.weight > 0) {
    const decay = Math.exp(-lambda * (d.at - at))
    d.sum += x * w * decay
    d.weight += w * decay
    return
  }
  const decay = Math.exp(-lambda * (at - d.at))
  const weight = d.weight * decay
  // a weight this small is noise (and 0/0 waiting to happen): start over
  const keep = weight >= NEGLIGIBLE_WEIGHT
  d.sum = (keep ? d.sum * decay : 0) + x * w
  d.weight = (keep ? weight : 0) + w
  d.at = at
}
