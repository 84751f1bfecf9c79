/**
 * Usage receipts: what a consumer owes an exit for one session, signed by
 * both. A receipt is cumulative (counters since the session started), so the
 * newest one supersedes every earlier one and losing receipts in between
 * costs nothing. This file holds the pure part: encoding, signing,
 * verification and the monotonicity rules; the ledger persists the results.
 *
 * Threat model (README, "Credits and receipts"): nobody can forge another node's receipt (both
 * signatures are checked against the keys embedded in the peer ids), nobody
 * can mint credit by signing with themselves alone (consumer ≠ exit), and a
 * receipt cannot be replayed (per-session monotonicity, domain-separated
 * signatures, started_at and price pinned per session).
 */

import { createPrivateKey, createPublicKey, hash, sign as ed25519Sign, verify as ed25519Verify } from 'node:crypto'
import { peerIdFromMultihash, peerIdFromPrivateKey } from '@libp2p/peer-id'
import * as Digest from 'multiformats/hashes/digest'
import { writer as createWriter } from 'protons-runtime'
import { concat as uint8ArrayConcat } from 'uint8arrays/concat'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { MAX_RECEIPT_BYTES, MAX_RECEIPT_INTEGER, MAX_SESSION_ID_LENGTH, RECEIPT_SIGNATURE_DOMAIN } from './constants.ts'
import { ReceiptError, ReceiptErrorCode } from './errors.ts'
import { Receipt as ReceiptMessage } from './pb/receipt.ts'
import type { AbortOptions, Ed25519PeerId, PeerId, PrivateKey } from '@libp2p/interface'
import type { KeyObject } from 'node:crypto'

/**
 * A receipt as the code handles it: the generated `Receipt` message, except
 * that byte fields take any Uint8Array (signatures from `key.sign()` and
 * Node Buffers included), not only ArrayBuffer-backed ones. Every field is
 * optional, as on the wire; the functions below check them.
 */
export interface Receipt {
  sessionId?: string
  /** Peer id bytes: `peerId.toMultihash().bytes`. */
  consumer?: Uint8Array
  exit?: Uint8Array
  bytesUp?: bigint
  bytesDown?: bigint
  seq?: bigint
  /** Unix time, ms. */
  startedAt?: bigint
  updatedAt?: bigint
  /** Micro-credits per 10^9 bytes. */
  pricePerGb?: bigint
  consumerSig?: Uint8Array
  exitSig?: Uint8Array
}

/** Everything but the signatures, all present. */
export type ReceiptBody = Required<Omit<Receipt, 'consumerSig' | 'exitSig'>>
/** Signed by the consumer; the exit has not countersigned (yet). */
export type SignedReceipt = ReceiptBody & { consumerSig: Uint8Array, exitSig?: Uint8Array }
/** Signed by both parties: what the ledger stores and gossip carries. */
export type CountersignedReceipt = ReceiptBody & { consumerSig: Uint8Array, exitSig: Uint8Array }

export interface VerifyReceiptOptions {
  /**
   * A consumer-signed receipt on its way to the exit has no exit signature
   * yet; everything stored or gossiped must have one.
   *
   * @default true
   */
  requireExitSig?: boolean
}

/** The parties of a verified receipt, decoded from its consumer and exit bytes. */
export interface ReceiptParties {
  consumer: Ed25519PeerId
  exit: Ed25519PeerId
}

const DOMAIN = uint8ArrayFromString(RECEIPT_SIGNATURE_DOMAIN)
const SIGNATURE_LENGTH = 64
const INTEGER_FIELDS = ['bytesUp', 'bytesDown', 'seq', 'startedAt', 'updatedAt', 'pricePerGb'] as const
// C0/C1 controls and lone surrogates: they would not survive UTF-8 encoding
// unchanged (so the signed bytes would differ from the object) or would break
// CSV exports and logs
const BAD_SESSION_CHAR = /[\p{Cc}\p{Cs}]/u

function malformed (reason: string): ReceiptError {
  return new ReceiptError({ code: ReceiptErrorCode.MALFORMED, reason })
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/**
 * Receipt.encode(), but correct for every uint64. protons-runtime 7.1.2
 * writes uint64 values in [2^31, 2^32) as garbage (LongBits keeps the low
 * word signed and the varint loop stops at once), and session counters cross
 * that range at 2 GiB. The generated codec still decides fields, tags and
 * order; only the number writing goes through `uint64Number` (uint8-varint,
 * exact below 2^53), values above 2^53 have a non-zero high word and take
 * the original, working, path.
 */
export function encodeReceiptProtobuf (r: Receipt): Uint8Array {
  const w = createWriter()
  const uint64 = w.uint64.bind(w)
  w.uint64 = (value: bigint) => value >= 0n && value <= MAX_SAFE ? w.uint64Number(Number(value)) : uint64(value)
  // the codec only reads the byte fields, so any Uint8Array will do
  ReceiptMessage.codec().encode(r as ReceiptMessage, w, { lengthDelimited: false })
  return w.finish()
}

function checkSessionId (sessionId: unknown): void {
  if (typeof sessionId !== 'string') throw malformed('session_id missing')
  if (sessionId.length < 1 || sessionId.length > MAX_SESSION_ID_LENGTH) {
    throw malformed(`session_id must be 1-${MAX_SESSION_ID_LENGTH} characters, got ${sessionId.length}`)
  }
  if (BAD_SESSION_CHAR.test(sessionId)) throw malformed('session_id contains control characters or lone surrogates')
}

function checkIntegers (r: Receipt): void {
  for (const field of INTEGER_FIELDS) {
    const v = r[field]
    if (typeof v !== 'bigint') throw malformed(`${field} missing`)
    if (v < 0n || v > MAX_RECEIPT_INTEGER) throw malformed(`${field} ${v} outside 0..2^63-1`)
  }
  if (r.seq! < 1n) throw malformed('seq must be at least 1')
  if (r.updatedAt! < r.startedAt!) throw malformed('updated_at is before started_at')
}

function checkSignatureField (sig: unknown, role: 'consumer' | 'exit', required: boolean, sessionId: string): void {
  if (sig == null && !required) return
  if (sig instanceof Uint8Array && sig.byteLength === SIGNATURE_LENGTH) return
  const missing = sig == null
  throw role === 'consumer'
    ? new ReceiptError({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE, sessionId, missing })
    : new ReceiptError({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE, sessionId, missing })
}

/**
 * Structural checks that need no key: every field present and in range.
 * Cheap, so callers run it before anything expensive (signatures, storage).
 */
export function checkReceiptFields (r: Receipt, signatures: { consumer: boolean, exit: boolean } = { consumer: true, exit: true }): asserts r is Receipt & ReceiptBody {
  if (r == null || typeof r !== 'object') throw malformed('not an object')
  checkSessionId(r.sessionId)
  if (!(r.consumer instanceof Uint8Array) || r.consumer.byteLength === 0) throw malformed('consumer missing')
  if (!(r.exit instanceof Uint8Array) || r.exit.byteLength === 0) throw malformed('exit missing')
  checkIntegers(r)
  checkSignatureField(r.consumerSig, 'consumer', signatures.consumer, r.sessionId!)
  checkSignatureField(r.exitSig, 'exit', signatures.exit, r.sessionId!)
  // why: with one key on both sides anyone could mint credit by "carrying" their own traffic
  if (uint8ArrayEquals(r.consumer, r.exit)) {
    throw new ReceiptError({ code: ReceiptErrorCode.WRONG_PEER, reason: 'consumer and exit are the same peer' })
  }
}

// Decoding a peer id parses a protobuf key and building Node's key object
// parses it again; gossip repeats the same few peers, so a small cache saves
// that work (verification runs ~1.7x faster with a cached KeyObject than
// through @libp2p/crypto, which rebuilds it per call). Cleared when full:
// simple and bounded.
const PEER_CACHE_MAX = 4096
interface CachedPeer { peer: Ed25519PeerId, key: KeyObject }
const peerCache = new Map<string, CachedPeer>()

function decodeEd25519Peer (bytes: Uint8Array, field: 'consumer' | 'exit'): CachedPeer {
  // hex through Buffer: this runs for every signature checked, and the multiformats codec is slow
  const cacheKey = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
  const cached = peerCache.get(cacheKey)
  if (cached != null) return cached
  let peer: PeerId
  try {
    peer = peerIdFromMultihash(Digest.decode(bytes))
  } catch (err: any) {
    throw new ReceiptError({ code: ReceiptErrorCode.UNSUPPORTED_KEY, field, reason: `not a peer id (${err.message})` })
  }
  if (peer.type !== 'Ed25519') {
    throw new ReceiptError({ code: ReceiptErrorCode.UNSUPPORTED_KEY, field, reason: `${peer.type} peer ids are not accepted, only Ed25519` })
  }
  if (!uint8ArrayEquals(peer.publicKey.toMultihash().bytes, bytes)) {
    throw new ReceiptError({ code: ReceiptErrorCode.UNSUPPORTED_KEY, field, reason: 'non-canonical key encoding' })
  }
  const key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: uint8ArrayToString(peer.publicKey.raw, 'base64url') } })
  if (peerCache.size >= PEER_CACHE_MAX) peerCache.clear()
  const entry = { peer, key }
  peerCache.set(cacheKey, entry)
  return entry
}

/**
 * Decodes peer id bytes that must be the identity multihash of an Ed25519
 * key, in its one canonical encoding. Canonical matters: two encodings of
 * one key would be two "different" peers to `consumer ≠ exit`.
 */
export function ed25519PeerFromBytes (bytes: Uint8Array, field: 'consumer' | 'exit' = 'consumer'): Ed25519PeerId {
  return decodeEd25519Peer(bytes, field).peer
}

/**
 * The bytes both signatures cover: the domain string, then the protobuf
 * encoding of the receipt with both signature fields unset. The encoding is
 * deterministic (fields in field-number order, minimal varints), so signer
 * and verifier compute the same bytes from the same receipt, whatever byte
 * spelling carried it.
 */
export function receiptSigningBytes (r: Receipt): Uint8Array {
  const body = encodeReceiptProtobuf({ ...r, consumerSig: undefined, exitSig: undefined })
  return uint8ArrayConcat([DOMAIN, body], DOMAIN.byteLength + body.byteLength)
}

function verifySignature (key: KeyObject, data: Uint8Array, sig: Uint8Array): boolean {
  try {
    return ed25519Verify(null, data, key, sig)
  } catch {
    // why: a key library that throws on odd input must not turn into a crash path for gossip
    return false
  }
}

/**
 * The signing bytes of receipts made here (signAsConsumer,
 * verifyAndCountersign, verifyCountersignature), by object. On the data path
 * (a receipt per MiB) the same receipt is encoded again moments later: for
 * the wire, for the ledger, to check the exit's answer. The signatures are
 * the last fields (10 and 11), so every encoding of such a receipt is its
 * signing bytes with the signature fields appended, and nothing needs
 * encoding twice. Only objects this module made are cached: frozen, and
 * with their own copies of every byte field, so nothing the caller still
 * holds can change them. (A typed array cannot be frozen: the bytes of a
 * receipt handed out here must not be changed in place.) A WeakMap forgets
 * them with the object.
 */
const signingBytesCache = new WeakMap<Receipt, Uint8Array>()

function signingBytesOf (r: Receipt): Uint8Array {
  return signingBytesCache.get(r) ?? receiptSigningBytes(r)
}

/**
 * Hands out a receipt made here: its byte fields copied (no view into a
 * caller's or a network buffer, which would also keep that whole buffer
 * alive), frozen, its signing bytes remembered.
 */
function made<T extends Receipt> (r: T, signingBytes: Uint8Array): T {
  for (const field of ['consumer', 'exit', 'consumerSig', 'exitSig'] as const) {
    const bytes = r[field]
    if (bytes != null) r[field] = Uint8Array.from(bytes)
  }
  Object.freeze(r)
  signingBytesCache.set(r, signingBytes)
  return r
}

/** Whether `r` was made by this module (signAsConsumer, verifyAndCountersign, verifyCountersignature): frozen, owning its bytes. */
export function madeHere (r: Receipt): boolean {
  return signingBytesCache.has(r)
}

const CONSUMER_SIG_TAG = (10 << 3) | 2
const EXIT_SIG_TAG = (11 << 3) | 2

/** The protobuf encoding of a receipt whose signing bytes are known: body, then the signature fields (64 bytes each). */
function encodeFromSigningBytes (r: Receipt, signingBytes: Uint8Array): Uint8Array {
  const body = signingBytes.subarray(DOMAIN.byteLength)
  const sigs = [r.consumerSig, r.exitSig].filter((x): x is Uint8Array => x != null)
  const out = new Uint8Array(body.byteLength + sigs.length * (2 + SIGNATURE_LENGTH))
  out.set(body, 0)
  let at = body.byteLength
  for (const [tag, sig] of [[CONSUMER_SIG_TAG, r.consumerSig], [EXIT_SIG_TAG, r.exitSig]] as const) {
    if (sig == null) continue
    out[at] = tag
    out[at + 1] = SIGNATURE_LENGTH
    out.set(sig, at + 2)
    at += 2 + SIGNATURE_LENGTH
  }
  return out
}

/** A signing key as Node wants it, and whose peer id it is. */
interface Signer { key: KeyObject, peer: Uint8Array }

/**
 * Signers by private key. A receipt is signed every MiB on the data path:
 * building Node's key object (and the peer id) for every signature costs
 * more than the signature itself.
 */
const signers = new WeakMap<PrivateKey, Signer>()

function signerOf (privateKey: PrivateKey, role: 'consumer' | 'exit'): Signer {
  let s = signers.get(privateKey)
  if (s == null) {
    if (privateKey.type !== 'Ed25519') {
      throw new ReceiptError({ code: ReceiptErrorCode.UNSUPPORTED_KEY, field: role, reason: `${privateKey.type} keys cannot sign receipts, only Ed25519` })
    }
    const key = createPrivateKey({
      format: 'jwk',
      key: { kty: 'OKP', crv: 'Ed25519', d: uint8ArrayToString(privateKey.raw.subarray(0, 32), 'base64url'), x: uint8ArrayToString(privateKey.publicKey.raw, 'base64url') }
    })
    s = { key, peer: peerIdFromPrivateKey(privateKey).toMultihash().bytes }
    signers.set(privateKey, s)
  }
  return s
}

/** Signs as `role`, which must be the receipt party `expected`. Ed25519 is deterministic: the same bytes as `privateKey.sign()`. */
function signAs (privateKey: PrivateKey, expected: Uint8Array, role: 'consumer' | 'exit', data: Uint8Array): Uint8Array {
  const s = signerOf(privateKey, role)
  if (!uint8ArrayEquals(s.peer, expected)) {
    throw new ReceiptError({ code: ReceiptErrorCode.WRONG_PEER, reason: `the signing key is not the receipt's ${role}` })
  }
  // copied: Node returns a Buffer, whose slice() is a view and whose equality differs from Uint8Array's
  return new Uint8Array(ed25519Sign(null, data, s.key))
}

/**
 * The consumer's signature over a new cumulative receipt. Returns a copy
 * with `consumerSig` set and `exitSig` cleared (any earlier countersignature
 * covered other contents).
 */
export async function signAsConsumer (r: Receipt, privateKey: PrivateKey, options?: AbortOptions): Promise<SignedReceipt> {
  options?.signal?.throwIfAborted()
  const body: Receipt = { ...r, consumerSig: undefined, exitSig: undefined }
  checkReceiptFields(body, { consumer: false, exit: false })
  ed25519PeerFromBytes(body.exit, 'exit')
  const data = receiptSigningBytes(body)
  const consumerSig = signAs(privateKey, body.consumer, 'consumer', data)
  return made<SignedReceipt>({ ...body, consumerSig, exitSig: undefined }, data)
}

/**
 * The exit's countersignature. Checks the consumer's signature first: an
 * exit that countersigned an unverified receipt would vouch for a forgery.
 */
export async function countersign (r: Receipt, exitPrivateKey: PrivateKey, options?: AbortOptions): Promise<CountersignedReceipt> {
  options?.signal?.throwIfAborted()
  return verifyAndCountersign({ ...r, exitSig: undefined }, exitPrivateKey)
}

/**
 * The exit's step on the data path: checks the consumer's signature (and
 * every field) and countersigns, over one encoding of the receipt. Throws a
 * ReceiptError; the exit must not vouch for a forgery.
 */
export function verifyAndCountersign (r: Receipt, exitPrivateKey: PrivateKey): CountersignedReceipt {
  // a countersignature the caller passed in is dropped, not checked
  const unsigned = { ...r, exitSig: undefined }
  const { data } = checkSignatures(unsigned, false)
  const body = unsigned as SignedReceipt
  return made<CountersignedReceipt>({ ...body, exitSig: signAs(exitPrivateKey, body.exit, 'exit', data) }, data)
}

/**
 * Checks that `full` is exactly `signed` (which we signed ourselves) plus a
 * valid exit signature: the consumer's answer path. Our own signature needs
 * no check when its bytes and everything it covers are the ones we made.
 * Returns the parties and the countersigned receipt, as our own object.
 */
export function verifyCountersignature (full: Receipt, signed: SignedReceipt): ReceiptParties & { receipt: CountersignedReceipt } {
  checkReceiptFields(full, { consumer: true, exit: true })
  // every signed field equal to ours (and our signature): then the signing
  // bytes are the ones we signed, with no need to encode them again
  if (!sameSignedFields(full, signed) || full.consumerSig == null || !uint8ArrayEquals(full.consumerSig, signed.consumerSig)) {
    throw new ReceiptError({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE, sessionId: full.sessionId })
  }
  const data = signingBytesOf(signed)
  const exit = decodeEd25519Peer(full.exit, 'exit')
  if (!verifySignature(exit.key, data, full.exitSig!)) {
    throw new ReceiptError({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE, sessionId: full.sessionId })
  }
  const receipt = made<CountersignedReceipt>({ ...signed, exitSig: Uint8Array.from(full.exitSig!) }, data)
  return { consumer: decodeEd25519Peer(full.consumer, 'consumer').peer, exit: exit.peer, receipt }
}

/**
 * The exit's answer to a receipt we signed, checked by its bytes: it must be
 * exactly the encoding of `signed` followed by one exit signature field,
 * which is the one canonical encoding of `signed` countersigned. That is
 * what verifyCountersignature(decodeReceipt(answer), signed) checks, with
 * no decoding, but for one thing: the exit's signature is NOT verified
 * here. The consumer's ledger verifies the newest receipt of each batch it
 * writes (Ledger.recordLater): a receipt is cumulative, so the ones it
 * supersedes are never written and need no check, and a receipt per MiB
 * then costs one signature check per batch rather than one each.
 *
 * Throws BAD_CONSUMER_SIGNATURE when the answer is not our receipt, and
 * BAD_EXIT_SIGNATURE when it is ours without a well-formed exit signature.
 */
export function countersignedAnswer (answer: Uint8Array, signed: SignedReceipt): CountersignedReceipt {
  // a receipt made here was checked when it was signed; any other is checked now, as decoding the answer would
  if (!madeHere(signed)) checkReceiptFields(signed, { consumer: true, exit: false })
  const data = signingBytesOf(signed)
  const ours = encodeFromSigningBytes({ consumerSig: signed.consumerSig }, data)
  const sigAt = ours.byteLength + 2
  const isOurs = answer.byteLength >= ours.byteLength && uint8ArrayEquals(answer.subarray(0, ours.byteLength), ours)
  if (!isOurs) throw new ReceiptError({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE, sessionId: signed.sessionId })
  if (answer.byteLength !== sigAt + SIGNATURE_LENGTH || answer[ours.byteLength] !== EXIT_SIG_TAG || answer[ours.byteLength + 1] !== SIGNATURE_LENGTH) {
    throw new ReceiptError({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE, sessionId: signed.sessionId, missing: answer.byteLength === ours.byteLength })
  }
  // `signed` is our own, frozen and owning its bytes (signingBytesOf fell back to encoding if it is not): only the signature is new
  const receipt = Object.freeze({ ...signed, exitSig: new Uint8Array(answer.subarray(sigAt)) }) as CountersignedReceipt
  if (madeHere(signed)) signingBytesCache.set(receipt, data)
  return receipt
}

/** Every field the signatures cover, compared (the signatures themselves are not covered). */
function sameSignedFields (a: Receipt & ReceiptBody, b: Receipt & ReceiptBody): boolean {
  return a.sessionId === b.sessionId && uint8ArrayEquals(a.consumer, b.consumer) && uint8ArrayEquals(a.exit, b.exit) &&
    INTEGER_FIELDS.every(f => a[f] === b[f])
}

/**
 * Full verification: fields, peer ids and signatures. Throws a
 * ReceiptError; returns the decoded parties so callers need not decode them
 * again.
 */
export async function verifyReceipt (r: Receipt, options: VerifyReceiptOptions & AbortOptions = {}): Promise<ReceiptParties> {
  options.signal?.throwIfAborted()
  return checkReceiptSignatures(r, options.requireExitSig ?? true)
}

/**
 * verifyReceipt(), synchronously: every field and both signatures (the
 * exit's only when present, if not required). Throws a ReceiptError.
 */
export function checkReceiptSignatures (r: Receipt, requireExitSig = true): ReceiptParties {
  const { consumer, exit } = checkSignatures(r, requireExitSig)
  return { consumer, exit }
}

/** Fields, peer ids and every signature present (the exit's only if required or present); returns the signing bytes checked. */
function checkSignatures (r: Receipt, requireExitSig: boolean): ReceiptParties & { data: Uint8Array } {
  checkReceiptFields(r, { consumer: true, exit: requireExitSig })
  const consumer = decodeEd25519Peer(r.consumer, 'consumer')
  const exit = decodeEd25519Peer(r.exit, 'exit')
  // a receipt made here is frozen: its remembered signing bytes are its own
  const data = signingBytesOf(r)
  if (!verifySignature(consumer.key, data, r.consumerSig!)) {
    throw new ReceiptError({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE, sessionId: r.sessionId })
  }
  if (r.exitSig != null && !verifySignature(exit.key, data, r.exitSig)) {
    throw new ReceiptError({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE, sessionId: r.sessionId })
  }
  return { consumer: consumer.peer, exit: exit.peer, data }
}

/**
 * Everything checkReceiptSignatures() checks but the two signatures
 * themselves (fields, peer ids), and what checking those takes: the bytes
 * they cover and the raw Ed25519 keys. For checking the signatures
 * elsewhere (another thread); throws as checkReceiptSignatures() would.
 */
export function prepareSignatureCheck (r: Receipt): { data: Uint8Array, consumerKey: Uint8Array, exitKey: Uint8Array } {
  checkReceiptFields(r)
  const consumer = decodeEd25519Peer(r.consumer, 'consumer')
  const exit = decodeEd25519Peer(r.exit, 'exit')
  return { data: signingBytesOf(r), consumerKey: consumer.peer.publicKey.raw, exitKey: exit.peer.publicKey.raw }
}

/** Encodes for the wire or for storage, refusing anything over MAX_RECEIPT_BYTES. */
export function encodeReceipt (r: Receipt): Uint8Array {
  const signingBytes = signingBytesCache.get(r)
  const bytes = signingBytes != null ? encodeFromSigningBytes(r, signingBytes) : encodeReceiptProtobuf(r)
  if (bytes.byteLength > MAX_RECEIPT_BYTES) {
    throw new ReceiptError({ code: ReceiptErrorCode.TOO_LARGE, size: bytes.byteLength, max: MAX_RECEIPT_BYTES })
  }
  return bytes
}

/**
 * Decodes bytes from the wire. Size is checked before parsing so an
 * oversized message costs nothing; the result is NOT verified.
 *
 * Only the canonical encoding is accepted (what encodeReceipt() writes):
 * protons ignores wire types and skips unknown fields, so without this check
 * one receipt would have many byte spellings, each passing gossip
 * de-duplication by message hash.
 */
export function decodeReceipt (bytes: Uint8Array): Receipt {
  if (bytes.byteLength > MAX_RECEIPT_BYTES) {
    throw new ReceiptError({ code: ReceiptErrorCode.TOO_LARGE, size: bytes.byteLength, max: MAX_RECEIPT_BYTES })
  }
  let r: Receipt
  try {
    r = ReceiptMessage.decode(bytes)
  } catch (err: any) {
    throw malformed(`undecodable: ${err.message}`)
  }
  if (!uint8ArrayEquals(encodeReceiptProtobuf(r), bytes)) throw malformed('not the canonical encoding')
  return r
}

function lengthPrefixed (bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + bytes.byteLength)
  new DataView(out.buffer).setUint16(0, bytes.byteLength)
  out.set(bytes, 2)
  return out
}

/**
 * The session key (consumer, exit, session_id) as 64 hex characters:
 * sha256 over the length-prefixed parts, so the key is unambiguous and of
 * fixed size however long the session id is. `binary`: the same 32 bytes
 * as a string of 32 characters, half the memory where many are kept (an
 * export's verification keeps one per session).
 */
export function receiptId (r: Receipt, encoding: 'hex' | 'binary' = 'hex'): string {
  if (r.consumer == null || r.exit == null || r.sessionId == null) throw malformed('consumer, exit and session_id are needed for a receipt id')
  const key = uint8ArrayConcat([lengthPrefixed(r.consumer), lengthPrefixed(r.exit), uint8ArrayFromString(r.sessionId)])
  return hash('sha256', key, encoding)
}

/** What a new receipt does to the one held for its session. */
export type Progress = 'new' | 'advance' | 'duplicate'

function sameBody (a: ReceiptBody, b: ReceiptBody): boolean {
  return INTEGER_FIELDS.every(f => a[f] === b[f])
}

/**
 * The monotonicity rules, shared by ReceiptTracker, the ledger and export
 * verification. `held` is the receipt already accepted for the session (same
 * receipt id), `next` a verified one. Throws REPLAY, REGRESSED or CONFLICT.
 */
export function checkProgress (held: SignedReceipt | undefined, next: SignedReceipt): Progress {
  if (held == null) return 'new'
  const sessionId = next.sessionId
  // a session's start and price never change: a receipt that differs there
  // comes from an earlier session that reused the id
  if (held.startedAt !== next.startedAt || held.pricePerGb !== next.pricePerGb) {
    throw new ReceiptError({ code: ReceiptErrorCode.REPLAY, sessionId, reason: 'other-session' })
  }
  if (sameBody(held, next)) {
    // the countersigned copy of a receipt held with the consumer signature only is progress
    return held.exitSig == null && next.exitSig != null ? 'advance' : 'duplicate'
  }
  for (const field of ['seq', 'bytesUp', 'bytesDown', 'updatedAt'] as const) {
    if (next[field] < held[field]) {
      throw new ReceiptError({ code: ReceiptErrorCode.REGRESSED, sessionId, field, held: held[field], got: next[field] })
    }
  }
  if (next.seq === held.seq) throw new ReceiptError({ code: ReceiptErrorCode.CONFLICT, sessionId, seq: next.seq })
  return 'advance'
}

export interface ReceiptTrackerInit {
  /**
   * The exit's tracker sees consumer-signed receipts before countersigning;
   * set false there.
   *
   * @default true
   */
  requireExitSig?: boolean
}

/**
 * The newest receipt per session, in memory: the exit and the consumer each
 * keep one per open session to refuse regressions and replays on the
 * receipt stream. Callers `delete()` a session when it ends.
 */
export class ReceiptTracker {
  private readonly held = new Map<string, SignedReceipt>()
  private readonly requireExitSig: boolean

  constructor (init: ReceiptTrackerInit = {}) {
    this.requireExitSig = init.requireExitSig ?? true
  }

  /**
   * Verifies `r`, then applies it if it advances its session. An identical
   * receipt already held throws REPLAY (reason 'duplicate') and changes
   * nothing.
   */
  async accept (r: Receipt, options?: AbortOptions): Promise<'inserted' | 'updated'> {
    // verify and keep a copy: the caller may reuse its object
    const next = copyReceipt(r) as SignedReceipt
    await verifyReceipt(next, { ...options, requireExitSig: this.requireExitSig })
    const id = receiptId(next)
    // checked after the await: another accept() may have advanced the session meanwhile
    const progress = checkProgress(this.held.get(id), next)
    if (progress === 'duplicate') {
      throw new ReceiptError({ code: ReceiptErrorCode.REPLAY, sessionId: next.sessionId, reason: 'duplicate' })
    }
    this.held.set(id, next)
    return progress === 'new' ? 'inserted' : 'updated'
  }

  /** The newest accepted receipt of a session, by receipt id. */
  current (id: string): SignedReceipt | undefined {
    return this.held.get(id)
  }

  /** [receipt id, newest receipt] of every tracked session. */
  entries (): IterableIterator<[string, SignedReceipt]> {
    return this.held.entries()
  }

  delete (id: string): boolean {
    return this.held.delete(id)
  }

  get size (): number {
    return this.held.size
  }
}

/** A copy that later mutation of the caller's object cannot change (new Uint8Array, not slice(): Buffer#slice is a view). */
function copyReceipt<T extends Receipt> (r: T): T {
  const copy = (b?: Uint8Array): Uint8Array | undefined => b == null ? undefined : new Uint8Array(b)
  return { ...r, consumer: copy(r.consumer), exit: copy(r.exit), consumerSig: copy(r.consumerSig), exitSig: copy(r.exitSig) }
}
