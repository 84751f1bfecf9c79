/**
 * Exit selection: which exits a consumer tries for a request, best first.
 *
 * Each candidate gets a score in 0..1 from what its ad claims (capacity,
 * load, price), what others say of it (reputation), what we measured
 * ourselves (round-trip time, and the ExitTelemetry prediction of
 * bandwidth, time to first byte and failures at this hour of the week) and
 * whether its addresses are in the region it claims:
 *
 *   score = P(success)^reliability × Σ wᵢ·uᵢ / Σ wᵢ × region factor
 *
 * Each utility uᵢ maps one factor onto 0..1 with a saturating curve —
 * b / (b + ref) for bandwidth, 1 / (1 + x / ref) for RTT, TTFB and price,
 * 1 − load — so no single factor can run away with the score, and each is
 * strictly monotonic, so a better value never lowers a score. Bandwidth is
 * the smaller of what we measured and what the ad leaves free
 * (capacity × (1 − load)): an exit is believed when it claims less than it
 * delivered, never when it claims more. Success probability multiplies:
 * a failed attempt yields nothing and costs a retry.
 *
 * Exploitation alone would starve new exits: with no measurements they
 * score below proven ones, so they never get the traffic that would prove
 * them. A share `explore` of selections are exploration rounds instead,
 * ranked by Thompson sampling: every uncertain quantity is drawn from a
 * distribution of what it could be — success probability from
 * Beta(successes + prior, failures + prior), bandwidth and TTFB
 * log-normally around their estimates with a spread shrinking as
 * 1/√(1 + samples) — and candidates are ranked by the score of the draw.
 * A well-known exit draws close to its mean, a new one widely. Thompson
 * sampling alone would explore too little here, because proven exits
 * already sit near the top of the scale and a draw cannot beat "almost
 * surely fine" often; so an exploration round also puts first the
 * under-explored exit (confidence below EXPLORE_CONFIDENCE) with the best
 * draw, unless its region claim is contradicted by its addresses. That
 * makes `explore` mean what an operator expects — about that share of
 * first picks go to an exit we do not know well yet, the most promising
 * of them — and the other selections stay greedy: at `explore` 0 the best
 * expected exit is always first. Once an exit has been tried a few times
 * it leaves the pool; when its evidence decays (hours unused) it re-enters,
 * so known exits get re-checked too.
 *
 * Filtering (region, ports, sticky sessions, exits already tried) happens
 * before; the clock and the randomness are arguments, so the same inputs
 * give the same ranking. With a `limit` only the top k are kept in a heap:
 * one pass of O(n log k) over 10,000 candidates.
 */

import {
  BANDWIDTH_REFERENCE_BPS, DEFAULT_EXPLORE, EXPLORE_CONFIDENCE, DEFAULT_RTT_MS, DEFAULT_TTFB_MS, DEFAULT_WEIGHTS, MBPS_TO_BYTES_PER_SECOND,
  NEUTRAL_REPUTATION, PRICE_REFERENCE_MICRO, PRIOR_FAILURES, PRIOR_LOG_SPREAD, PRIOR_SUCCESSES, RTT_REFERENCE_MS, TTFB_REFERENCE_MS
} from './constants.ts'
import { createSampler } from './random.ts'
import type { SelectionWeights } from './constants.ts'
import type { Prediction, TelemetrySource } from './exit-telemetry.ts'
import type { RegionVerification } from './geo.ts'
import type { RandomSource, Sampler } from './random.ts'

export { ExitTelemetry, hourOfWeek, UNKNOWN_PREDICTION } from './exit-telemetry.ts'
export type { ExitTelemetryInit, FailureSample, Prediction, SuccessSample, TelemetrySource } from './exit-telemetry.ts'
export { DEFAULT_WEIGHTS } from './constants.ts'
export type { SelectionWeights } from './constants.ts'

/** An exit that may serve a request, from its verified ad plus what we know of it. */
export interface Candidate {
  peerId: string
  region: string
  capacityMbps: number
  /** 0..1 */
  load: number
  pricePerGbMicro: bigint | number
  /** Measured round-trip time to the exit; unknown counts as DEFAULT_RTT_MS. */
  rttMs?: number
  /** 0..1; unknown counts as NEUTRAL_REPUTATION. */
  reputation?: number
  /** verifyRegion() of its claimed region. */
  verified: RegionVerification
  /** Tunnels of ours open through it now: they share what its ad leaves free with the one being chosen for. */
  ownTunnels?: number
}

export interface SelectOptions {
  /** Ms since the epoch: the hour of the week the prediction is for. */
  now: number
  /** Uniform [0, 1) source; seeded in tests and simulations. */
  random: RandomSource
  /** Share of selections that explore, 0..1. @default DEFAULT_EXPLORE (0.1) */
  explore?: number
  /** Return only the best `limit` exits. @default all */
  limit?: number
  /** @default DEFAULT_WEIGHTS */
  weights?: SelectionWeights
}

export interface RankedExit<C extends Candidate = Candidate> {
  candidate: C
  /** The score it was ranked by: expected, or drawn when `explored`. */
  score: number
  prediction: Prediction
  /** Whether this selection was an exploration round. */
  explored: boolean
}

/** Factors of one candidate in the units the utilities take. */
interface Factors {
  successProbability: number
  /** Available bytes/s. */
  bandwidth: number
  ttfbMs: number
}

// ---------------------------------------------------------------------------
// Scoring
// ---------------------------------------------------------------------------

/** Bytes/s the ad leaves free: capacity × (1 − load). */
export function advertisedAvailable (candidate: Candidate): number {
  return nonNegative(candidate.capacityMbps) * MBPS_TO_BYTES_PER_SECOND * (1 - loadOf(candidate))
}

/** Bytes/s we expect to get: the measured bandwidth, but never more than the ad leaves free. */
export function availableBandwidth (candidate: Candidate, predicted: number | undefined): number {
  const advertised = advertisedAvailable(candidate)
  return predicted == null || !(predicted >= 0) ? advertised : Math.min(predicted, advertised)
}

/** The expected score of `candidate` given its prediction; see the module comment. */
export function scoreCandidate (candidate: Candidate, prediction: Prediction, weights: SelectionWeights = DEFAULT_WEIGHTS): number {
  return scoreFactors(candidate, {
    successProbability: 1 - clamp01(prediction.failureRate, 1),
    bandwidth: availableBandwidth(candidate, prediction.bandwidth),
    ttfbMs: prediction.ttfbMs ?? DEFAULT_TTFB_MS
  }, weights)
}

function scoreFactors (c: Candidate, f: Factors, w: SelectionWeights): number {
  const total = w.reputation + w.rtt + w.ttfb + w.bandwidth + w.price + w.load
  const sum =
    w.reputation * clamp01(c.reputation ?? NEUTRAL_REPUTATION) +
    w.rtt * inverseUtility(c.rttMs ?? DEFAULT_RTT_MS, RTT_REFERENCE_MS) +
    w.ttfb * inverseUtility(f.ttfbMs, TTFB_REFERENCE_MS) +
    w.bandwidth * bandwidthUtility(f.bandwidth) +
    w.price * inverseUtility(Number(c.pricePerGbMicro), PRICE_REFERENCE_MICRO) +
    w.load * (1 - loadOf(c))
  const base = total > 0 ? sum / total : 1
  const reliability = Math.pow(clamp01(f.successProbability), w.reliability)
  return base * reliability * regionFactor(c.verified, w)
}

function regionFactor (verified: RegionVerification, w: SelectionWeights): number {
  if (verified === 'mismatch') return w.regionMismatch
  if (verified === 'unverifiable') return w.regionUnverifiable
  return 1
}

/** 1 at zero, 0.5 at `reference`, falling towards 0; for costs (RTT, TTFB, price). A negative or NaN cost is junk and counts as infinite. */
function inverseUtility (x: number, reference: number): number {
  return x >= 0 ? 1 / (1 + x / reference) : 0
}

/** 0 at zero, 0.5 at BANDWIDTH_REFERENCE_BPS, rising towards 1: the tenth 100 Mbit/s matters less than the first 10. */
function bandwidthUtility (bytesPerSecond: number): number {
  const b = nonNegative(bytesPerSecond)
  return b === Infinity ? 1 : b / (b + BANDWIDTH_REFERENCE_BPS)
}

/** `x` within 0..1; NaN becomes `ifNaN`, the worse end for whatever `x` measures, so junk input never wins. */
function clamp01 (x: number, ifNaN = 0): number {
  if (Number.isNaN(x)) return ifNaN
  return x >= 0 ? (x <= 1 ? x : 1) : 0
}

/**
 * The load a new tunnel of ours would find: the ad's, with what it leaves
 * free shared among our tunnels already there and the new one. An ad is
 * republished every few minutes, so it cannot tell of the tunnels we
 * opened meanwhile; without this, a client opening many tunnels at once
 * put them all on the one best exit while the region's others idled. Our
 * tunnels that were open when the ad was made count twice then: with an
 * exit's hundreds of tunnels in its load, a few of ours more or less move
 * little.
 */
function loadOf (c: Candidate): number {
  const own = nonNegative(c.ownTunnels ?? 0)
  return 1 - (1 - clamp01(c.load, 1)) / (1 + own)
}

function nonNegative (x: number): number {
  return x >= 0 ? x : 0 // NaN -> 0
}

// ---------------------------------------------------------------------------
// Thompson draws
// ---------------------------------------------------------------------------

/** One plausible score of `candidate`: each uncertain factor drawn from what the evidence allows. */
export function sampleScore (candidate: Candidate, prediction: Prediction, sampler: Sampler, weights: SelectionWeights = DEFAULT_WEIGHTS): number {
  const successProbability = sampler.beta(prediction.successes + PRIOR_SUCCESSES, prediction.failures + PRIOR_FAILURES)
  const advertised = advertisedAvailable(candidate)
  const bandwidth = Math.min(advertised, logNormal(prediction.bandwidth ?? advertised, prediction.bandwidthSamples, sampler))
  const ttfbMs = logNormal(prediction.ttfbMs ?? DEFAULT_TTFB_MS, prediction.ttfbSamples, sampler)
  return scoreFactors(candidate, { successProbability, bandwidth, ttfbMs }, weights)
}

/** `estimate` × e^(σz), with σ shrinking as evidence grows: a multiplicative error, as bandwidth errors are. */
function logNormal (estimate: number, samples: number, sampler: Sampler): number {
  const sigma = PRIOR_LOG_SPREAD / Math.sqrt(1 + nonNegative(samples))
  return nonNegative(estimate) * Math.exp(sigma * sampler.normal())
}

// ---------------------------------------------------------------------------
// Ranking
// ---------------------------------------------------------------------------

/** Ranks `candidates` best first; see the module comment for how. */
export function selectExits<C extends Candidate> (candidates: readonly C[], telemetry: TelemetrySource, options: SelectOptions): Array<RankedExit<C>> {
  const n = candidates.length
  const weights = options.weights ?? DEFAULT_WEIGHTS
  const explore = clamp01(options.explore ?? DEFAULT_EXPLORE)
  // draw only when exploring is possible, so explore = 0 consumes no randomness
  const explored = explore > 0 && options.random() < explore
  const sampler = explored ? createSampler(options.random) : undefined

  const predictions = new Array<Prediction>(n)
  const scores = new Float64Array(n)
  for (let i = 0; i < n; i++) {
    const c = candidates[i]
    const p = telemetry.predict(c.peerId, options.now)
    predictions[i] = p
    const s = sampler == null ? scoreCandidate(c, p, weights) : sampleScore(c, p, sampler, weights)
    scores[i] = Number.isNaN(s) ? -Infinity : s
  }

  // an exploration round puts its most promising under-explored exit first
  let rankBy = scores
  const promoted = explored ? bestUnderExplored(candidates, predictions, scores) : -1
  if (promoted >= 0) {
    rankBy = scores.slice()
    rankBy[promoted] = Infinity
  }

  const limit = Math.max(0, Math.min(n, Math.floor(options.limit ?? n)))
  return topK(rankBy, limit).map(i => ({ candidate: candidates[i], score: scores[i], prediction: predictions[i], explored }))
}

/** Index of the best-drawn candidate with confidence below EXPLORE_CONFIDENCE and no contradicted region claim; -1 if none. */
function bestUnderExplored (candidates: readonly Candidate[], predictions: Prediction[], scores: Float64Array): number {
  let best = -1
  for (let i = 0; i < candidates.length; i++) {
    if (predictions[i].confidence >= EXPLORE_CONFIDENCE || candidates[i].verified === 'mismatch') continue
    if (best < 0 || better(scores, i, best)) best = i
  }
  return best
}

/** Higher score first; equal scores keep input order, so rankings are deterministic. */
function better (scores: Float64Array, a: number, b: number): boolean {
  return scores[a] > scores[b] || (scores[a] === scores[b] && a < b)
}

/**
 * Indices of the `k` best scores, best first. A min-heap of the best k seen
 * so far (its root the worst of them) makes one pass enough: O(n log k)
 * instead of sorting all n.
 */
export function topK (scores: Float64Array, k: number): number[] {
  const n = scores.length
  if (k <= 0) return []
  if (k >= n) return Array.from({ length: n }, (_, i) => i).sort((a, b) => better(scores, a, b) ? -1 : 1)
  const heap = new Int32Array(k)
  let size = 0
  for (let i = 0; i < n; i++) {
    if (size < k) {
      heap[size++] = i
      siftUp(heap, size - 1, scores)
    } else if (better(scores, i, heap[0])) {
      heap[0] = i
      siftDown(heap, size, scores)
    }
  }
  return Array.from(heap).sort((a, b) => better(scores, a, b) ? -1 : 1)
}

// heap order: a parent is worse than its children
function siftUp (heap: Int32Array, i: number, scores: Float64Array): void {
  while (i > 0) {
    const parent = (i - 1) >> 1
    if (!better(scores, heap[parent], heap[i])) return
    swap(heap, i, parent)
    i = parent
  }
}

function siftDown (heap: Int32Array, size: number, scores: Float64Array): void {
  let i = 0
  for (;;) {
    const l = 2 * i + 1
    const r = l + 1
    let worst = i
    if (l < size && better(scores, heap[worst], heap[l])) worst = l
    if (r < size && better(scores, heap[worst], heap[r])) worst = r
    if (worst === i) return
    swap(heap, i, worst)
    i = worst
  }
}

function swap (heap: Int32Array, a: number, b: number): void {
  const t = heap[a]
  heap[a] = heap[b]
  heap[b] = t
}
