/**
 * Reputation reports: what one consumer saw of one exit over a recent
 * window (tunnels opened, tunnels the exit failed), signed by the consumer
 * and spread on the gossip topic `spareband/reputation/1`. This file holds
 * the pure part: fields, the canonical encoding, signing and verification.
 * What a report is worth is decided by whoever reads it (see
 * reputation-book.ts): a signature only says who is speaking.
 *
 * Reports are not cumulative like receipts: each one states the window
 * that ends when it was issued, and a reporter's newer report on an exit
 * replaces its older one.
 */

import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { concat as uint8ArrayConcat } from 'uint8arrays/concat'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ReceiptError, ReputationError, ReputationErrorCode } from './errors.ts'
import { ed25519PeerFromBytes } from './receipts.ts'
import { MAX_RECEIPT_INTEGER, MAX_REPUTATION_REPORT_BYTES, REPUTATION_SIGNATURE_DOMAIN, REPUTATION_WINDOW_MS } from './constants.ts'
import { ReputationReport as ReportMessage } from './pb/reputation.ts'
import type { Ed25519PeerId, PrivateKey } from '@libp2p/interface'

/** A report as the code handles it; every field is optional, as on the wire, and the functions below check them. */
export interface ReputationReport {
  /** Peer id bytes: `peerId.toMultihash().bytes`. */
  reporter?: Uint8Array
  subject?: Uint8Array
  /** Unix time in ms. */
  issuedAt?: bigint
  windowSeconds?: number
  successes?: number
  failures?: number
  signature?: Uint8Array
}

export type ReportBody = Required<Omit<ReputationReport, 'signature'>>
export type SignedReport = ReportBody & { signature: Uint8Array }

const DOMAIN = uint8ArrayFromString(REPUTATION_SIGNATURE_DOMAIN)
const SIGNATURE_LENGTH = 64
const MAX_WINDOW_SECONDS = REPUTATION_WINDOW_MS / 1000
/** Tunnels a report may count, each way: a thousand a minute for a day. More is a made-up figure. */
export const MAX_REPORT_COUNT = 1_440_000

function malformed (reason: string): ReputationError {
  return new ReputationError(ReputationErrorCode.MALFORMED, `malformed reputation report: ${reason}`)
}

function peerOf (bytes: Uint8Array | undefined, field: 'reporter' | 'subject'): Ed25519PeerId {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength === 0) throw malformed(`${field} missing`)
  try {
    return ed25519PeerFromBytes(bytes)
  } catch (err) {
    if (err instanceof ReceiptError) throw new ReputationError(ReputationErrorCode.UNSUPPORTED_KEY, `reputation report ${field}: ${err.message.replace(/^receipt consumer: /, '')}`)
    throw err
  }
}

function checkCount (value: unknown, field: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_REPORT_COUNT) throw malformed(`${field} must be an integer from 0 to ${MAX_REPORT_COUNT}`)
}

/**
 * Checks every field but the signature, and returns the two peers. A
 * report must count at least one tunnel: one of nothing says nothing.
 */
export function checkReportFields (r: ReputationReport): { reporter: Ed25519PeerId, subject: Ed25519PeerId } {
  if (r == null || typeof r !== 'object') throw malformed('not an object')
  const reporter = peerOf(r.reporter, 'reporter')
  const subject = peerOf(r.subject, 'subject')
  // why: an exit praising itself would need no one else
  if (uint8ArrayEquals(r.reporter!, r.subject!)) throw new ReputationError(ReputationErrorCode.WRONG_PEER, 'a reputation report cannot be about its own reporter')
  if (typeof r.issuedAt !== 'bigint' || r.issuedAt <= 0n || r.issuedAt > MAX_RECEIPT_INTEGER) throw malformed('issued_at must be a positive time in ms')
  if (typeof r.windowSeconds !== 'number' || !Number.isInteger(r.windowSeconds) || r.windowSeconds < 1 || r.windowSeconds > MAX_WINDOW_SECONDS) {
    throw malformed(`window_seconds must be an integer from 1 to ${MAX_WINDOW_SECONDS}`)
  }
  checkCount(r.successes, 'successes')
  checkCount(r.failures, 'failures')
  if (r.successes! + r.failures! === 0) throw malformed('a report must count at least one tunnel')
  return { reporter, subject }
}

/** The protobuf encoding: deterministic (fields in field-number order, minimal varints, zero counts written out). */
function encodeProtobuf (r: ReputationReport): Uint8Array {
  return ReportMessage.encode(r as ReportMessage)
}

/** What the signature covers: the domain, then the encoding without the signature. */
export function reportSigningBytes (r: ReputationReport): Uint8Array {
  return uint8ArrayConcat([DOMAIN, encodeProtobuf({ ...r, signature: undefined })])
}

/** Signs a report as its reporter, which `privateKey` must be. */
export async function signReport (body: ReportBody, privateKey: PrivateKey): Promise<SignedReport> {
  const r: ReputationReport = { ...body, signature: undefined }
  checkReportFields(r)
  if (!uint8ArrayEquals(peerIdFromPrivateKey(privateKey).toMultihash().bytes, r.reporter!)) {
    throw new ReputationError(ReputationErrorCode.WRONG_PEER, 'the signing key is not the report\'s reporter')
  }
  const signature = await privateKey.sign(reportSigningBytes(r))
  return { ...body, signature: Uint8Array.from(signature) }
}

/** Checks the fields and the reporter's signature; returns the two peers. Throws ReputationError. */
export async function verifyReport (r: ReputationReport): Promise<{ reporter: Ed25519PeerId, subject: Ed25519PeerId }> {
  const peers = checkReportFields(r)
  if (!(r.signature instanceof Uint8Array) || r.signature.byteLength !== SIGNATURE_LENGTH) {
    throw new ReputationError(ReputationErrorCode.BAD_SIGNATURE, 'reputation report signature missing or not 64 bytes')
  }
  let valid = false
  try {
    valid = await peers.reporter.publicKey.verify(reportSigningBytes(r), r.signature)
  } catch {
    // why: a key library that throws on odd input must not turn into a crash path for gossip
  }
  if (!valid) throw new ReputationError(ReputationErrorCode.BAD_SIGNATURE, 'reputation report signature does not verify')
  return peers
}

export function encodeReport (r: ReputationReport): Uint8Array {
  const bytes = encodeProtobuf(r)
  if (bytes.byteLength > MAX_REPUTATION_REPORT_BYTES) {
    throw new ReputationError(ReputationErrorCode.TOO_LARGE, `reputation report of ${bytes.byteLength} B exceeds ${MAX_REPUTATION_REPORT_BYTES} B`)
  }
  return bytes
}

/**
 * Decodes bytes from the wire; NOT verified. Only the canonical encoding is
 * accepted, so a report has one spelling and gossip's de-duplication by
 * message id sees copies as copies.
 */
export function decodeReport (bytes: Uint8Array): ReputationReport {
  if (bytes.byteLength > MAX_REPUTATION_REPORT_BYTES) {
    throw new ReputationError(ReputationErrorCode.TOO_LARGE, `reputation report of ${bytes.byteLength} B exceeds ${MAX_REPUTATION_REPORT_BYTES} B`)
  }
  let r: ReputationReport
  try {
    r = ReportMessage.decode(bytes)
  } catch (err: any) {
    throw malformed(`undecodable: ${err.message}`)
  }
  if (!uint8ArrayEquals(encodeProtobuf(r), bytes)) throw malformed('not the canonical encoding')
  return r
}
