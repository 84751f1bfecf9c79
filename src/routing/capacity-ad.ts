/**
 * Capacity advertisements: what an exit offers (region, capacity, load,
 * price, ports, addresses), signed by the exit and stored in the DHT at
 * `/spareband/cap/` + its peer id bytes (docs/PROTOCOLS.md, "Capacity record").
 *
 * DHT servers store these records for strangers and consumers rank exits by
 * them, so everything a record says is checked before it is believed:
 *
 * - the size first (4 KiB), so a huge record costs nothing to refuse;
 * - every field, so a record the selector or scoring would choke on (NaN
 *   load, a region that is no region, 10,000 addresses) never gets stored;
 * - the peer id in the record equals the one in the key, so an exit cannot
 *   squat another exit's key;
 * - the expiry, within MAX_AD_LIFETIME, so a stale price or load cannot be
 *   kept alive and a record cannot be made to outlive its exit;
 * - last, because it costs most, the signature: by the key embedded in the
 *   peer id, over the domain string `spareband-capacity-v1` followed by the
 *   encoding of the ad with `signature` unset. The domain keeps the exit's
 *   signature from ever being valid as a receipt or any other message.
 *
 * The signed bytes are the re-encoding of the decoded fields, not the bytes
 * received: protons writes fields in a fixed order, so the signer and every
 * checker produce the same bytes, and whatever the decoder skipped (unknown
 * fields) is neither signed nor believed.
 *
 * Replays: an old ad of the same exit stays validly signed until it expires.
 * The selector prefers the highest `seq`, so a replayed older ad loses to
 * the current one wherever both are seen, and expiry bounds how long a
 * replay can matter at all.
 */

import { createHash } from 'node:crypto'
import { peerIdFromMultihash, peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Libp2pRecord } from '@libp2p/record'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { compare as uint8ArrayCompare } from 'uint8arrays/compare'
import { concat as uint8ArrayConcat } from 'uint8arrays/concat'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { parsePortList } from '../relay/ports.ts'
import {
  CAPACITY_KEY_PREFIX, CAPACITY_SIGNATURE_DOMAIN, MAX_AD_INTEGER, MAX_AD_LIFETIME, MAX_AD_MULTIADDRS,
  MAX_AD_MULTIADDR_BYTES, MAX_AD_PORTS_LENGTH, MAX_CAPACITY_AD_BYTES, MAX_CAPACITY_MBPS, MAX_CLOCK_SKEW, REGION_KEY_DOMAIN
} from './constants.ts'
import { CapacityAdError, CapacityAdErrorCode, InvalidRegionError } from './errors.ts'
import { CapacityAd } from './pb/capacity.ts'
import { isValidRegion, normalizeRegion, regionKeysFor } from './regions.ts'
import type { PortRange } from '../relay/ports.ts'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export { CapacityAd } from './pb/capacity.ts'
export { CapacityAdError, CapacityAdErrorCode } from './errors.ts'

/** What an exit puts in its ad; the peer id comes from the signing key. */
export interface CapacityAdInit {
  /** ISO 3166 region, normalised to lower case before signing: `de`, `us-ca`. */
  region: string
  /** Total capacity the operator offers, Mbit/s. */
  capacityMbps: number
  /** Share of the capacity in use now, 0..1. */
  load: number
  /** Micro-credits per GB. */
  pricePerGbMicro: bigint | number
  /** The exit policy's ports as text: `80,443,8000-8100`. */
  allowedPorts: string
  /** Addresses consumers can dial the exit on. */
  multiaddrs?: Array<Multiaddr | string | Uint8Array>
  /** Must grow with every new ad of this exit (e.g. the signing time in ms). */
  seq: bigint | number
  /** Ms since the epoch; at most MAX_AD_LIFETIME ahead of the checkers' clocks. */
  expiresAt: bigint | number
}

/** An ad whose signature, fields and expiry were checked, in the types callers use. */
export interface VerifiedCapacityAd {
  peerId: PeerId
  region: string
  capacityMbps: number
  load: number
  pricePerGbMicro: bigint
  /** The text as signed, e.g. for display. */
  allowedPortsText: string
  allowedPorts: PortRange[]
  multiaddrs: Multiaddr[]
  seq: bigint
  /** Ms since the epoch. */
  expiresAt: number
}

export interface VerifyCapacityAdOptions {
  /** The current time, ms since the epoch. */
  now: number
}

export interface CapacityRecordInit {
  /** Clock for the expiry checks, injectable for tests and simulations. @default Date.now */
  now?: () => number
}

const KEY_PREFIX_BYTES = uint8ArrayFromString(CAPACITY_KEY_PREFIX)
const SIGNATURE_DOMAIN_BYTES = uint8ArrayFromString(CAPACITY_SIGNATURE_DOMAIN)

// ---------------------------------------------------------------------------
// DHT keys
// ---------------------------------------------------------------------------

/** The DHT record key of `peerId`'s capacity ad: utf8('/spareband/cap/') || multihash bytes. */
export function capacityKey (peerId: PeerId): Uint8Array {
  return uint8ArrayConcat([KEY_PREFIX_BYTES, peerId.toMultihash().bytes])
}

/** The peer id a capacity record key names; throws `CapacityAdError` BAD_KEY. */
export function peerIdFromCapacityKey (key: Uint8Array): PeerId {
  if (key.byteLength <= KEY_PREFIX_BYTES.byteLength || !uint8ArrayEquals(key.subarray(0, KEY_PREFIX_BYTES.byteLength), KEY_PREFIX_BYTES)) {
    throw new CapacityAdError({ code: CapacityAdErrorCode.BAD_KEY, reason: `key does not start with ${CAPACITY_KEY_PREFIX}` })
  }
  try {
    return peerIdFromMultihash(Digest.decode(key.subarray(KEY_PREFIX_BYTES.byteLength)))
  } catch (err: any) {
    throw new CapacityAdError({ code: CapacityAdErrorCode.BAD_KEY, reason: `not a peer id: ${err?.message ?? err}` })
  }
}

/**
 * The provider key of a region: `CIDv1(raw, sha256("spareband:region:v1:" + region))`
 * (docs/PROTOCOLS.md, "Region keys"). The region is normalised first, so `DE` and
 * `de` meet at the same key; a region that is not an ISO code throws, since
 * providing or searching a key nobody else would use only wastes DHT work.
 */
export function regionCid (region: string): CID {
  const r = normalizeRegion(region)
  if (!isValidRegion(r)) throw new InvalidRegionError(`"${region}" is not an ISO 3166 region`)
  // node:crypto hashes synchronously; multiformats' hasher may return a promise
  const hash = createHash('sha256').update(REGION_KEY_DOMAIN + r, 'utf8').digest()
  return CID.createV1(raw.code, Digest.create(sha256.code, new Uint8Array(hash)))
}

/** The keys an exit in `region` provides: its country's and, if it has one, its subdivision's. */
export function regionCidsFor (region: string): CID[] {
  return regionKeysFor(region).map(regionCid)
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/** Encodes an ad for the DHT; throws TOO_LARGE rather than publish what every peer would refuse. */
export function encodeCapacityAd (ad: CapacityAd): Uint8Array {
  const bytes = CapacityAd.encode(ad)
  checkSize(bytes.byteLength)
  return bytes
}

/** Decodes a record value; throws TOO_LARGE before decoding anything oversized, MALFORMED on bad bytes. */
export function decodeCapacityAd (bytes: Uint8Array): CapacityAd {
  checkSize(bytes.byteLength)
  try {
    return CapacityAd.decode(bytes)
  } catch (err: any) {
    throw new CapacityAdError({ code: CapacityAdErrorCode.MALFORMED, reason: err?.message ?? String(err) })
  }
}

function checkSize (size: number): void {
  if (size > MAX_CAPACITY_AD_BYTES) {
    throw new CapacityAdError({ code: CapacityAdErrorCode.TOO_LARGE, size, max: MAX_CAPACITY_AD_BYTES })
  }
}

/** The bytes a signature covers: the domain string, then the ad encoded without its signature. */
function signedBytes (ad: CapacityAd): Uint8Array {
  return uint8ArrayConcat([SIGNATURE_DOMAIN_BYTES, CapacityAd.encode({ ...ad, signature: undefined })])
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/**
 * Builds and signs an ad. The fields are checked exactly as the validator
 * will check them, because kad-dht's `put` stores an invalid record locally
 * without complaint and only the remote peers refuse it.
 */
export async function signCapacityAd (init: CapacityAdInit, privateKey: PrivateKey): Promise<CapacityAd> {
  const ad: CapacityAd = {
    peerId: peerIdFromPrivateKey(privateKey).toMultihash().bytes,
    region: normalizeRegion(init.region),
    capacityMbps: init.capacityMbps,
    load: init.load,
    pricePerGb: toBigInt(init.pricePerGbMicro, 'price_per_gb'),
    allowedPorts: init.allowedPorts,
    multiaddrs: (init.multiaddrs ?? []).map(toMultiaddrBytes),
    seq: toBigInt(init.seq, 'seq'),
    expiresAt: toBigInt(init.expiresAt, 'expires_at')
  }
  checkFields(ad)
  // copied so the field is a plain ArrayBuffer-backed array, as protons types it
  ad.signature = new Uint8Array(await privateKey.sign(signedBytes(ad)))
  checkSize(CapacityAd.encode(ad).byteLength)
  return ad
}

function toBigInt (value: bigint | number, field: string): bigint {
  if (typeof value === 'bigint') return value
  if (!Number.isSafeInteger(value)) invalidField(field, `${value} is not an integer`)
  return BigInt(value)
}

function toMultiaddrBytes (ma: Multiaddr | string | Uint8Array): Uint8Array<ArrayBuffer> {
  if (ma instanceof Uint8Array) return new Uint8Array(ma)
  try {
    return multiaddr(ma).bytes
  } catch (err: any) {
    invalidField('multiaddrs', `${String(ma)} is not a multiaddr: ${err?.message ?? err}`)
  }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/** Everything a verified ad holds but the peer id, which comes from the key. */
type CheckedFields = Omit<VerifiedCapacityAd, 'peerId'>

function invalidField (field: string, reason: string): never {
  throw new CapacityAdError({ code: CapacityAdErrorCode.INVALID_FIELD, field, reason })
}

function required<T> (value: T | undefined, field: string): T {
  if (value == null) invalidField(field, 'missing')
  return value
}

/** Every field present and in range; no clock, no signature. */
function checkFields (ad: CapacityAd): CheckedFields {
  required(ad.peerId, 'peer_id')
  return {
    region: checkRegion(required(ad.region, 'region')),
    capacityMbps: checkNumber(required(ad.capacityMbps, 'capacity_mbps'), 'capacity_mbps', 0, MAX_CAPACITY_MBPS),
    load: checkNumber(required(ad.load, 'load'), 'load', 0, 1),
    pricePerGbMicro: checkInteger(required(ad.pricePerGb, 'price_per_gb'), 'price_per_gb'),
    allowedPortsText: required(ad.allowedPorts, 'allowed_ports'),
    allowedPorts: checkPorts(required(ad.allowedPorts, 'allowed_ports')),
    multiaddrs: checkMultiaddrs(ad.multiaddrs ?? []),
    seq: checkInteger(required(ad.seq, 'seq'), 'seq'),
    expiresAt: Number(checkInteger(required(ad.expiresAt, 'expires_at'), 'expires_at'))
  }
}

function checkRegion (region: string): string {
  // the signed form must already be canonical, so every peer derives the same region keys from it
  if (region !== normalizeRegion(region) || !isValidRegion(region)) invalidField('region', `"${region.slice(0, 32)}" is not a lower-case ISO 3166 region`)
  return region
}

function checkNumber (value: number, field: string, min: number, max: number): number {
  // NaN fails both comparisons' negations, so test the accepted range positively
  if (!(value >= min && value <= max)) invalidField(field, `${value} is outside ${min}..${max}`)
  return value
}

function checkInteger (value: bigint, field: string): bigint {
  if (value < 0n || value > MAX_AD_INTEGER) invalidField(field, `${value} is outside 0..2^63-1`)
  return value
}

function checkPorts (text: string): PortRange[] {
  if (text.length > MAX_AD_PORTS_LENGTH) invalidField('allowed_ports', `longer than ${MAX_AD_PORTS_LENGTH} characters`)
  let ranges: PortRange[]
  try {
    ranges = parsePortList([text])
  } catch (err: any) {
    invalidField('allowed_ports', err?.message ?? String(err))
  }
  // an exit that opens no port has nothing to offer
  if (ranges.length === 0) invalidField('allowed_ports', 'no ports')
  return ranges
}

function checkMultiaddrs (list: Uint8Array[]): Multiaddr[] {
  if (list.length > MAX_AD_MULTIADDRS) invalidField('multiaddrs', `${list.length} addresses, at most ${MAX_AD_MULTIADDRS}`)
  return list.map((bytes, i) => {
    if (bytes.byteLength === 0 || bytes.byteLength > MAX_AD_MULTIADDR_BYTES) invalidField('multiaddrs', `address ${i} is ${bytes.byteLength} B, expected 1..${MAX_AD_MULTIADDR_BYTES}`)
    try {
      const ma = multiaddr(bytes)
      ma.getComponents()
      return ma
    } catch (err: any) {
      invalidField('multiaddrs', `address ${i} does not parse: ${err?.message ?? err}`)
    }
  })
}

function checkExpiry (expiresAt: number, now: number): void {
  if (expiresAt <= now) throw new CapacityAdError({ code: CapacityAdErrorCode.EXPIRED, expiresAt, now })
  if (expiresAt - now > MAX_AD_LIFETIME + MAX_CLOCK_SKEW) {
    throw new CapacityAdError({ code: CapacityAdErrorCode.TOO_FAR_IN_FUTURE, expiresAt, now, max: MAX_AD_LIFETIME })
  }
}

/** The signer named in the ad, which must embed its public key. */
function signerOf (ad: CapacityAd): PeerId {
  let peerId: PeerId
  try {
    peerId = peerIdFromMultihash(Digest.decode(required(ad.peerId, 'peer_id')))
  } catch (err: any) {
    if (err instanceof CapacityAdError) throw err
    invalidField('peer_id', `not a peer id: ${err?.message ?? err}`)
  }
  if (peerId.publicKey == null) {
    throw new CapacityAdError({ code: CapacityAdErrorCode.UNSUPPORTED_KEY, reason: `${peerId.type} peer ids do not embed their public key` })
  }
  return peerId
}

function checkPeerMatchesKey (ad: CapacityAd, keyPeer: PeerId): void {
  if (ad.peerId == null || !uint8ArrayEquals(ad.peerId, keyPeer.toMultihash().bytes)) {
    throw new CapacityAdError({ code: CapacityAdErrorCode.PEER_MISMATCH })
  }
}

/**
 * Checks fields, expiry and signature of a decoded ad and returns it in the
 * types callers use. Throws `CapacityAdError`.
 */
export async function verifyCapacityAd (ad: CapacityAd, options: VerifyCapacityAdOptions): Promise<VerifiedCapacityAd> {
  const fields = checkFields(ad)
  checkExpiry(fields.expiresAt, options.now)
  const peerId = signerOf(ad)
  if (ad.signature == null || ad.signature.byteLength === 0) throw new CapacityAdError({ code: CapacityAdErrorCode.BAD_SIGNATURE, missing: true })
  const ok = await peerId.publicKey!.verify(signedBytes(ad), ad.signature)
  if (!ok) throw new CapacityAdError({ code: CapacityAdErrorCode.BAD_SIGNATURE })
  return { peerId, ...fields }
}

// ---------------------------------------------------------------------------
// kad-dht validator and selector
// ---------------------------------------------------------------------------

/**
 * A kad-dht `ValidateFn` for `/spareband/cap/` records (register it under
 * `validators.spareband`). Cheap checks run first; the signature last.
 */
export function createCapacityValidator (init: CapacityRecordInit = {}): (key: Uint8Array, value: Uint8Array) => Promise<void> {
  const now = init.now ?? Date.now
  return async (key, value) => {
    await validateCapacityRecord(key, value, now())
  }
}

/** Validates one record, returning what it says. */
export async function validateCapacityRecord (key: Uint8Array, value: Uint8Array, now: number): Promise<VerifiedCapacityAd> {
  const keyPeer = peerIdFromCapacityKey(key)
  const ad = decodeCapacityAd(value)
  checkPeerMatchesKey(ad, keyPeer)
  return verifyCapacityAd(ad, { now })
}

/** The validator on the wall clock. */
export const capacityValidator = createCapacityValidator()

/**
 * A kad-dht `SelectFn` for `/spareband/cap/` records (register it under
 * `selectors.spareband`): the index of the valid record with the highest
 * seq, or -1 when none is valid (kad-dht then reports NotFoundError rather
 * than hand out an invalid record).
 *
 * kad-dht's SelectFn may return a promise but the contract here is a plain
 * number, so the checks are synchronous. kad-dht runs the validator on every
 * record before it reaches a selector; this still re-checks fields, key,
 * expiry and — where the crypto backend answers synchronously, as Node's
 * does for Ed25519 and secp256k1 — the signature, so a forged record can
 * never win even if handed in directly. Equal seqs (an exit that signed two
 * ads with one seq) are broken by the later expiry, then by the ad's own
 * encoding (what is signed, not the bytes received: a record spelt another
 * way, with a field twice or an unknown one, says the same and verifies
 * the same, and must not win or lose a tie by it), so every peer picks the
 * same ad and the network converges.
 */
export function createCapacitySelector (init: CapacityRecordInit = {}): (key: Uint8Array, values: Uint8Array[]) => number {
  const now = init.now ?? Date.now
  return (key, values) => {
    let keyPeer: PeerId
    try {
      keyPeer = peerIdFromCapacityKey(key)
    } catch {
      return -1
    }
    const t = now()
    let best = -1
    let bestAd: CheckedAd | undefined
    for (let i = 0; i < values.length; i++) {
      const ad = checkSync(keyPeer, values[i], t)
      if (ad == null) continue
      if (bestAd == null || isBetter(ad, bestAd)) {
        best = i
        bestAd = ad
      }
    }
    return best
  }
}

/** The selector on the wall clock. */
export const capacitySelector = createCapacitySelector()

/** What the selector compares of a valid ad: its seq, its expiry and its own encoding (signature included). */
interface CheckedAd { seq: bigint, expiresAt: number, encoded: Uint8Array }

function isBetter (a: CheckedAd, b: CheckedAd): boolean {
  if (a.seq !== b.seq) return a.seq > b.seq
  if (a.expiresAt !== b.expiresAt) return a.expiresAt > b.expiresAt
  return uint8ArrayCompare(a.encoded, b.encoded) < 0
}

/** Synchronous validity check for the selector; undefined when invalid. */
function checkSync (keyPeer: PeerId, value: Uint8Array, now: number): CheckedAd | undefined {
  try {
    const ad = decodeCapacityAd(value)
    checkPeerMatchesKey(ad, keyPeer)
    const fields = checkFields(ad)
    checkExpiry(fields.expiresAt, now)
    if (ad.signature == null || ad.signature.byteLength === 0) return undefined
    const ok = signerOf(ad).publicKey!.verify(signedBytes(ad), ad.signature)
    if (ok === false) return undefined
    // an asynchronous backend: the validator already checked it; do not leave the promise unhandled
    if (ok !== true) ok.catch(() => {})
    return { seq: fields.seq, expiresAt: fields.expiresAt, encoded: CapacityAd.encode(ad) }
  } catch {
    return undefined
  }
}

/** The exit whose capacity ad a DHT record key names; undefined for other records (kad-dht's own `/pk/` ones). For the DHT store's owner of a record. */
export function capacityAdAuthor (recordKey: Uint8Array): string | undefined {
  try {
    return peerIdFromCapacityKey(recordKey).toString()
  } catch {
    return undefined
  }
}

/**
 * Whether a held capacity record (a serialized libp2p record) beats the
 * one being written, as the selector judges: the higher seq; a tie goes to
 * the new one, so a re-put refreshes its time. For the DHT store, which
 * would otherwise take an older ad over a newer.
 */
export function heldAdIsNewer (incoming: Uint8Array, held: Uint8Array): boolean {
  try {
    const a = Libp2pRecord.deserialize(incoming)
    const b = Libp2pRecord.deserialize(held)
    return capacitySelector(a.key, [a.value, b.value]) === 1
  } catch {
    return false
  }
}
