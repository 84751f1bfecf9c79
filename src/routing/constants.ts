/**
 * Routing defaults and protocol limits in one place, so the advertiser, the
 * DHT validator, discovery, selection, tests, benchmarks and simulations
 * agree on them. Every value here can be cloned with `structuredClone`.
 */

import { KiB, day, hour, minute } from '../constants.ts'

// ---------------------------------------------------------------------------
// Capacity records (docs/PROTOCOLS.md, "Capacity record")
// ---------------------------------------------------------------------------

/** Record keys are this prefix followed by the exit's peer id bytes; kad-dht routes `/spareband/...` keys to the validator and selector registered under `spareband`. */
export const CAPACITY_KEY_PREFIX = '/spareband/cap/'

/** Domain string prefixed to the bytes a capacity ad signature covers, so it can never be replayed as a signature over a receipt or anything else. */
export const CAPACITY_SIGNATURE_DOMAIN = 'spareband-capacity-v1'

/** Domain string hashed with a region into its DHT provider key (docs/PROTOCOLS.md, "Region keys"). */
export const REGION_KEY_DOMAIN = 'spareband:region:v1:'

/**
 * A full ad is about 100 B plus its multiaddrs (16 × 256 B at worst would
 * exceed this, but real ones are 10-60 B). DHT peers store records for
 * strangers, so the bound is what keeps a record from being a storage attack.
 */
export const MAX_CAPACITY_AD_BYTES = 4 * KiB

/** More addresses than this is not a home or server exit but an address-spraying attempt. */
export const MAX_AD_MULTIADDRS = 16

/** A circuit address through a relay with a long peer id is about 120 B; twice that is generous. */
export const MAX_AD_MULTIADDR_BYTES = 256

/** The port list is short text like `80,443,8000-8100`; the `reduced` preset expands in code, not on the wire. */
export const MAX_AD_PORTS_LENGTH = 1024

/**
 * An ad must expire within this long of being checked. kad-dht drops put
 * records 48 h after receipt anyway and nothing republishes them, so exits
 * re-put well within a day; a longer claim would let a stale load or price
 * live on after the exit changed or left.
 */
export const MAX_AD_LIFETIME = day

/** Clocks of honest peers disagree by seconds, rarely minutes; the far-future check allows this much on top of MAX_AD_LIFETIME. */
export const MAX_CLOCK_SKEW = 5 * minute

/** How long the advertiser should make its ads live; it re-puts at half of it. */
export const DEFAULT_AD_LIFETIME = 6 * hour

/**
 * No single host carries more than 100 Gbit/s of relayed traffic; a larger
 * claim is meant to win selection before telemetry catches up.
 */
export const MAX_CAPACITY_MBPS = 100_000

/** Seq, price and expiry are uint64 on the wire but stay below int64, like receipts, so storage and JSON round-trips never wrap. */
export const MAX_AD_INTEGER = (1n << 63n) - 1n

// ---------------------------------------------------------------------------
// Telemetry
// ---------------------------------------------------------------------------

/**
 * Half-life of the overall averages (throughput, time to first byte,
 * failures). An hour follows an exit whose uplink got busy this evening
 * without forgetting it the moment one transfer goes well.
 */
export const TELEMETRY_HALF_LIFE = hour

/**
 * Half-life of the hour-of-week profile. A bucket gets new samples once a
 * week at most, so it must outlive a week: with a one-week half-life last
 * week counts half and the week before a quarter.
 */
export const PROFILE_HALF_LIFE = 7 * day

/** Hours in a week: the profile's bucket count. */
export const HOURS_PER_WEEK = 168

/**
 * How many samples the overall average is worth, at most, when blended with
 * the hour-of-week bucket. It acts as a prior: an empty bucket predicts the
 * overall average, a bucket with many samples outvotes it.
 */
export const PROFILE_PRIOR_WEIGHT = 2

/**
 * A transfer this large counts as one full throughput sample; smaller ones
 * count in proportion, because a 2 KiB response measures latency, not
 * bandwidth.
 */
export const FULL_THROUGHPUT_SAMPLE_BYTES = 256 * KiB

/** Effective samples at which confidence reaches 0.5 (confidence = n / (n + this)). */
export const CONFIDENCE_HALF_SAMPLES = 4

/**
 * Tunnel statuses that are the consumer's own doing (it asked for a port the
 * exit never advertised, sent garbage, or ran out of credit). They say
 * nothing about the exit, so they are not counted as its failures.
 */
export const NEUTRAL_FAILURE_STATUSES: readonly string[] = ['POLICY_DENIED', 'BAD_REQUEST', 'INSUFFICIENT_CREDIT']

/** Exits tracked at most; the least recently updated is forgotten first. */
export const MAX_TRACKED_EXITS = 10_000

// ---------------------------------------------------------------------------
// Scoring
// ---------------------------------------------------------------------------

/**
 * Weights of the terms of an exit's score. The score is
 *
 *   P(success)^reliability × Σ(wᵢ·uᵢ) / Σwᵢ × region factor
 *
 * where each uᵢ maps one factor onto 0..1 (1 is best), see selection.ts.
 * Success probability multiplies rather than adds because a failed attempt
 * yields nothing and costs a retry: an exit that fails half the time is
 * worth about half as much whatever its bandwidth.
 */
export interface SelectionWeights {
  /** Reputation from receipts and reports (0..1). */
  reputation: number
  /** Round-trip time to the exit: every tunnel setup pays it. */
  rtt: number
  /** Predicted time to first byte through the exit (exit DNS, dial, target). */
  ttfb: number
  /** Predicted available bandwidth. */
  bandwidth: number
  /** Advertised price per GB. */
  price: number
  /** Advertised load: a busy exit is likely to get slower, and sharing spreads it. */
  load: number
  /** Exponent on the predicted success probability; 0 ignores failures. */
  reliability: number
  /** Factor for an exit whose addresses geolocate to another country than it claims. */
  regionMismatch: number
  /** Factor for an exit whose region cannot be checked (private or unknown addresses). */
  regionUnverifiable: number
}

/**
 * Bandwidth weighs most: it is what consumers pay for and what differs most
 * between exits (orders of magnitude). Reputation is next because it is the
 * hardest to fake. Latency, price and load break ties between exits that
 * move bytes equally well. A claimed region that geolocates elsewhere halves
 * the score: often a VPN or a stale database, sometimes a lie, and the
 * consumer asked for that region.
 */
export const DEFAULT_WEIGHTS: SelectionWeights = {
  reputation: 2,
  rtt: 1,
  ttfb: 1,
  bandwidth: 3,
  price: 1,
  load: 1,
  reliability: 1,
  regionMismatch: 0.5,
  regionUnverifiable: 1
}

/** Reputation of a peer nobody reported on yet: neither trusted nor suspected. */
export const NEUTRAL_REPUTATION = 0.5

/** The utility curves u = 1 / (1 + x / reference) reach 0.5 at these values. */
export const RTT_REFERENCE_MS = 100
export const TTFB_REFERENCE_MS = 500
/** One credit (10^6 micro-credits) per GB. */
export const PRICE_REFERENCE_MICRO = 1_000_000

/** Bandwidth utility u = b / (b + reference) reaches 0.5 at 10 Mbit/s (in bytes/s). */
export const BANDWIDTH_REFERENCE_BPS = 1_250_000

/** Assumed when an exit was never pinged: a typical cross-continent RTT, so unknown is neither near nor far. */
export const DEFAULT_RTT_MS = 150

/** Assumed when an exit never carried a tunnel: DNS + TCP + TLS to a typical target. */
export const DEFAULT_TTFB_MS = 600

/**
 * Beta prior of an exit's success probability: worth four attempts, three
 * of them successful. A new exit starts below a proven one (mean 0.75), so
 * exploitation prefers the proven; exploration draws give it a fair shot.
 */
export const PRIOR_SUCCESSES = 3
export const PRIOR_FAILURES = 1

/**
 * Log-normal spread (σ of ln) of bandwidth and TTFB draws with no evidence;
 * it shrinks as 1/√(1 + samples). With σ = 0.7 an unknown exit is drawn
 * between half and twice the estimate about two times in three.
 */
export const PRIOR_LOG_SPREAD = 0.7

/**
 * Share of selections that explore: ranked by Thompson draws, with an
 * under-explored exit first. A tenth of first picks is enough to give a
 * new exit its first few tunnels within minutes on a busy consumer, and
 * costs the consumer little since later candidates are tried on failure.
 */
export const DEFAULT_EXPLORE = 0.1

/**
 * Exits below this confidence are under-explored: about CONFIDENCE_HALF_SAMPLES
 * recent attempts (confidence = n / (n + 4) = 0.5) lift an exit out of the
 * exploration pool.
 */
export const EXPLORE_CONFIDENCE = 0.5

/** Megabits per second to bytes per second. */
export const MBPS_TO_BYTES_PER_SECOND = 125_000
