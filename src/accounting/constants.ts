/**
 * Accounting defaults and protocol limits in one place, so the node config,
 * the tunnel integration, tests and simulations agree on them. Every value
 * here can be cloned with `structuredClone` (bigints included).
 */

import { MiB, day, second } from '../constants.ts'

/** Domain string prefixed to every receipt signature, so a receipt signature can never be replayed as a signature over any other kind of message. */
export const RECEIPT_SIGNATURE_DOMAIN = 'spareband-receipt-v1'

/** Domain string of the identity proof of work, for the same reason. */
export const POW_DOMAIN = 'spareband-pow-v1'

/**
 * An encoded receipt is about 300 B plus the session id (at most 128
 * characters, 512 B of UTF-8 in the worst case); anything above 1 KiB is an
 * attack or a bug, on a stream or in gossip.
 */
export const MAX_RECEIPT_BYTES = 1024

/** Same bound as the tunnel protocol's session id. */
export const MAX_SESSION_ID_LENGTH = 128

/**
 * Counters, timestamps and prices are uint64 on the wire but we refuse values
 * above int64: no real session comes near 2^63 bytes, and SQLite (and most
 * other storage) keeps integers as signed 64-bit.
 */
export const MAX_RECEIPT_INTEGER = (1n << 63n) - 1n

/** Credits are counted in integer micro-credits so sums are exact. */
export const MICRO_PER_CREDIT = 1_000_000n

/** Prices are quoted per decimal gigabyte, the unit bandwidth is sold in. */
export const BYTES_PER_GB = 1_000_000_000n

/** 1 credit per GB: the price an exit charges unless its operator sets another. */
export const DEFAULT_PRICE_PER_GB_MICRO = 1_000_000n

/**
 * Leading zero bits of the identity proof of work. Solving takes 2^20 ≈ 1M
 * SHA-256 hashes on average, about 1 s on one core (Node's one-shot
 * `crypto.hash` runs ~1M/s): cheap once per identity, expensive for someone
 * minting thousands of sybil identities to collect their allowances.
 */
export const DEFAULT_POW_DIFFICULTY = 20

/**
 * Credit every identity with a proof of work starts with: 1 GB at the default
 * price, so a newcomer can use the network before it has carried anything.
 * A sybil ring can mint at most this much per solved proof of work.
 */
export const DEFAULT_ALLOWANCE_MICRO = DEFAULT_PRICE_PER_GB_MICRO

/**
 * An exit answers new tunnels with INSUFFICIENT_CREDIT unless the consumer's
 * balance is above this. 0: the allowance (which takes a proof of work) lets
 * newcomers in; an identity without one, or a consumer that spent it, must
 * earn before it spends. A negative limit lets anyone in on that much credit.
 */
export const DEFAULT_CREDIT_LIMIT_MICRO = 0n

/**
 * An exit stops carrying a session's traffic once this many bytes have
 * passed without a consumer signature covering them: it bounds what an exit
 * can lose to a consumer that never signs.
 */
export const DEFAULT_UNSIGNED_BYTES_THRESHOLD = 4 * MiB

/** The consumer signs a new cumulative receipt after this many bytes... */
export const DEFAULT_RECEIPT_INTERVAL_BYTES = 1 * MiB

/** ...or after this long with traffic, whichever comes first. */
export const DEFAULT_RECEIPT_INTERVAL_MS = 5 * second

/**
 * How far ahead of this node's clock a receipt's updated_at may be. Signers
 * write their own clock; beyond this a receipt is not taken (an exit refuses
 * it, gossip ignores it), so a made-up date far in the future cannot stand.
 */
export const MAX_CLOCK_AHEAD_MS = 60 * 60 * 1000

/**
 * How long a node keeps a third party's session (one it heard of over
 * gossip, as neither consumer nor exit) after that session's last receipt
 * reached it. Balances do not need the row (totals are running sums), and a
 * session that is still in use stays: its exit gossips it at least every
 * publish interval (60 s) while it carries, and a consumer closes a session
 * after 30 s without traffic, so a month-old row belongs to a session that
 * ended about a month ago. A month keeps that much of the network's history
 * for `spareband receipts` and its exports, and bounds the rows a sybil pair
 * can leave on every node to the sessions it opens within a month (see
 * Ledger.pruneGossip).
 */
export const DEFAULT_GOSSIP_RETENTION_MS = 30 * day

/** Domain string of reputation report signatures: a report's signature is never one over a receipt, and the reverse. */
export const REPUTATION_SIGNATURE_DOMAIN = 'spareband-reputation-v1'

/**
 * An encoded report is two peer ids (38 B each), three small integers, a
 * timestamp and a signature: about 160 B. Anything above this is refused
 * before it is parsed.
 */
export const MAX_REPUTATION_REPORT_BYTES = 256

/** The longest window a report may cover, and how old a report may be before it no longer counts. */
export const REPUTATION_WINDOW_MS = day

/** A consumer reports on each exit it used at most this often (`accounting.reputation_interval_seconds`). */
export const DEFAULT_REPUTATION_INTERVAL_MS = 10 * 60 * second

/**
 * A reporter's newer report on an exit replaces its older one only this
 * long after it: a reporter cannot make every node re-score, or the topic
 * carry its reports, faster than this.
 */
export const MIN_REPUTATION_REPORT_GAP_MS = 60 * second

/**
 * What a reporter must have paid the exit it reports on, as this node's
 * ledger sees it, for its report to count in full: 0.01 credit, 10 MB at
 * the default price. Less counts in proportion, nothing not at all.
 */
export const REPUTATION_FULL_WEIGHT_MICRO = 10_000n
