/**
 * Receipt exports (`spareband receipts --export csv|json`) and their offline
 * check (`spareband verify FILE`). An export is evidence a member can hand to
 * someone who trusts no node: every entry carries both signatures, and the
 * verifier re-checks them, the per-session monotonicity and the totals.
 *
 * Parsing is strict on purpose (lower-case hex, canonical decimals and peer
 * ids, no unknown JSON keys, canonical CSV quoting): any single altered byte
 * of a field, counter or signature makes the file fail, instead of being
 * read as an equivalent spelling.
 */

import { peerIdFromString } from '@libp2p/peer-id'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { z } from 'zod'
import { costMicro } from './credits.ts'
import { ReceiptError } from './errors.ts'
import { checkProgress, checkReceiptFields, ed25519PeerFromBytes, receiptId, verifyReceipt } from './receipts.ts'
import type { CountersignedReceipt, Receipt, SignedReceipt } from './receipts.ts'

export type ExportFormat = 'json' | 'csv'

export const EXPORT_VERSION = 1

export interface ExportTotals {
  /** Lines (receipts) in the file. */
  entries: number
  /** Distinct sessions; totals count each session's newest receipt once. */
  sessions: number
  bytesUp: bigint
  bytesDown: bigint
  costMicro: bigint
}

export type VerifyExportResult =
  | { ok: true, format: ExportFormat, entries: number, totals: ExportTotals, receipts: CountersignedReceipt[] }
  /** index: the first bad entry, 1-based; 0 for the file as a whole (header, version, totals). */
  | { ok: false, index: number, sessionId?: string, reason: string }

/** The fields of one entry, all as strings, in file order. */
const FIELDS = ['sessionId', 'consumer', 'exit', 'bytesUp', 'bytesDown', 'seq', 'startedAt', 'updatedAt', 'pricePerGb', 'costMicro', 'consumerSig', 'exitSig'] as const
type Field = typeof FIELDS[number]
type Entry = Record<Field, string>

const CSV_HEADER = 'session_id,consumer,exit,bytes_up,bytes_down,seq,started_at,updated_at,price_per_gb,cost_micro,consumer_sig,exit_sig'

const DECIMAL = /^(0|[1-9][0-9]*)$/
const SIGNATURE_HEX = /^[0-9a-f]{128}$/

const decimal = z.string().regex(DECIMAL, 'not a canonical decimal')
const entrySchema = z.strictObject(Object.fromEntries(FIELDS.map(f => [f, z.string()])) as Record<Field, z.ZodString>)
const totalsSchema = z.strictObject({
  entries: z.number().int().nonnegative(),
  sessions: z.number().int().nonnegative(),
  bytesUp: decimal,
  bytesDown: decimal,
  costMicro: decimal
})
const fileSchema = z.strictObject({
  version: z.literal(EXPORT_VERSION),
  receipts: z.array(z.unknown()),
  totals: z.unknown()
})

// ---------------------------------------------------------------------------
// writing

function toEntry (r: Receipt): Entry {
  checkReceiptFields(r)
  return {
    sessionId: r.sessionId,
    consumer: ed25519PeerFromBytes(r.consumer, 'consumer').toString(),
    exit: ed25519PeerFromBytes(r.exit, 'exit').toString(),
    bytesUp: r.bytesUp.toString(),
    bytesDown: r.bytesDown.toString(),
    seq: r.seq.toString(),
    startedAt: r.startedAt.toString(),
    updatedAt: r.updatedAt.toString(),
    pricePerGb: r.pricePerGb.toString(),
    costMicro: costMicro(r.bytesUp + r.bytesDown, r.pricePerGb).toString(),
    consumerSig: uint8ArrayToString(r.consumerSig!, 'base16'),
    exitSig: uint8ArrayToString(r.exitSig!, 'base16')
  }
}

/** Sums the newest (highest seq) receipt of each session. */
function computeTotals (receipts: CountersignedReceipt[]): ExportTotals {
  const newest = new Map<string, CountersignedReceipt>()
  for (const r of receipts) {
    const id = receiptId(r)
    const held = newest.get(id)
    if (held == null || r.seq > held.seq) newest.set(id, r)
  }
  const totals: ExportTotals = { entries: receipts.length, sessions: newest.size, bytesUp: 0n, bytesDown: 0n, costMicro: 0n }
  for (const r of newest.values()) {
    totals.bytesUp += r.bytesUp
    totals.bytesDown += r.bytesDown
    totals.costMicro += costMicro(r.bytesUp + r.bytesDown, r.pricePerGb)
  }
  return totals
}

function totalsToJson (t: ExportTotals): z.infer<typeof totalsSchema> {
  return { entries: t.entries, sessions: t.sessions, bytesUp: t.bytesUp.toString(), bytesDown: t.bytesDown.toString(), costMicro: t.costMicro.toString() }
}

/** RFC 4180 quoting, only where needed, so each value has one spelling. */
function csvField (value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value
}

function csvLine (entry: Entry): string {
  return FIELDS.map(f => csvField(entry[f])).join(',')
}

/**
 * Countersigned receipts as a JSON or CSV document. Receipts of one session
 * must come in increasing seq order (the ledger stores one per session).
 * Throws ReceiptError for a receipt with a missing field.
 */
export function exportReceipts (receipts: Iterable<Receipt>, format: ExportFormat): string {
  const list = [...receipts]
  const entries = list.map(toEntry)
  if (format === 'csv') return [CSV_HEADER, ...entries.map(csvLine)].join('\n') + '\n'
  const totals = computeTotals(list as CountersignedReceipt[])
  return JSON.stringify({ version: EXPORT_VERSION, receipts: entries, totals: totalsToJson(totals) }, null, 2) + '\n'
}

// ---------------------------------------------------------------------------
// reading

class ExportFormatError extends Error {
  readonly index: number
  readonly sessionId?: string

  constructor (index: number, message: string, sessionId?: string) {
    super(message)
    this.name = 'ExportFormatError'
    this.index = index
    this.sessionId = sessionId
  }
}

/** Splits one CSV line (no embedded newlines: session ids cannot hold control characters). */
function splitCsvLine (line: string, index: number): string[] {
  const fields: string[] = []
  let i = 0
  while (true) {
    let value = ''
    if (line[i] === '"') {
      i++
      while (true) {
        const end = line.indexOf('"', i)
        if (end === -1) throw new ExportFormatError(index, 'unterminated quoted field')
        value += line.slice(i, end)
        i = end + 1
        if (line[i] !== '"') break
        value += '"'
        i++
      }
    } else {
      const end = line.indexOf(',', i)
      value = line.slice(i, end === -1 ? line.length : end)
      i = end === -1 ? line.length : end
    }
    fields.push(value)
    if (i === line.length) return fields
    if (line[i] !== ',') throw new ExportFormatError(index, 'text after a quoted field')
    i++
  }
}

function parseCsv (text: string): Entry[] {
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  if (lines[0] !== CSV_HEADER) throw new ExportFormatError(0, 'not a spareband receipt export (unknown CSV header)')
  return lines.slice(1).map((line, i) => {
    const values = splitCsvLine(line, i + 1)
    if (values.length !== FIELDS.length) throw new ExportFormatError(i + 1, `${values.length} fields, expected ${FIELDS.length}`)
    const entry = Object.fromEntries(FIELDS.map((f, k) => [f, values[k]])) as Entry
    // one spelling per value: re-quoting must give back the line
    if (csvLine(entry) !== line) throw new ExportFormatError(i + 1, 'line is not in canonical CSV form', entry.sessionId)
    return entry
  })
}

function firstIssue (error: z.ZodError): string {
  const issue = error.issues[0]
  return `${issue.path.join('.') || 'document'}: ${issue.message}`
}

function parseJson (text: string): { entries: Entry[], totals: unknown } {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err: any) {
    throw new ExportFormatError(0, `not JSON: ${err.message}`)
  }
  const file = fileSchema.safeParse(doc)
  if (!file.success) throw new ExportFormatError(0, `not a version ${EXPORT_VERSION} receipt export: ${firstIssue(file.error)}`)
  const entries = file.data.receipts.map((raw, i) => {
    const entry = entrySchema.safeParse(raw)
    if (!entry.success) throw new ExportFormatError(i + 1, firstIssue(entry.error), (raw as any)?.sessionId)
    return entry.data
  })
  return { entries, totals: file.data.totals }
}

function parseDecimal (entry: Entry, field: Field): bigint {
  if (!DECIMAL.test(entry[field])) throw new Error(`${field} "${entry[field]}" is not a canonical decimal`)
  return BigInt(entry[field])
}

function parsePeer (entry: Entry, field: 'consumer' | 'exit'): Uint8Array {
  let bytes: Uint8Array
  try {
    const peer = peerIdFromString(entry[field])
    if (peer.toString() !== entry[field]) throw new Error('non-canonical')
    bytes = peer.toMultihash().bytes
  } catch {
    throw new Error(`${field} "${entry[field]}" is not a peer id`)
  }
  ed25519PeerFromBytes(bytes, field)
  return bytes
}

function parseSignature (entry: Entry, field: 'consumerSig' | 'exitSig'): Uint8Array {
  if (!SIGNATURE_HEX.test(entry[field])) throw new Error(`${field} is not 128 lower-case hex digits`)
  return uint8ArrayFromString(entry[field], 'base16')
}

function entryToReceipt (entry: Entry): CountersignedReceipt {
  const r: CountersignedReceipt = {
    sessionId: entry.sessionId,
    consumer: parsePeer(entry, 'consumer'),
    exit: parsePeer(entry, 'exit'),
    bytesUp: parseDecimal(entry, 'bytesUp'),
    bytesDown: parseDecimal(entry, 'bytesDown'),
    seq: parseDecimal(entry, 'seq'),
    startedAt: parseDecimal(entry, 'startedAt'),
    updatedAt: parseDecimal(entry, 'updatedAt'),
    pricePerGb: parseDecimal(entry, 'pricePerGb'),
    consumerSig: parseSignature(entry, 'consumerSig'),
    exitSig: parseSignature(entry, 'exitSig')
  }
  if (parseDecimal(entry, 'costMicro') !== costMicro(r.bytesUp + r.bytesDown, r.pricePerGb)) {
    throw new Error(`cost_micro ${entry.costMicro} does not match the counters and price`)
  }
  return r
}

async function checkEntries (entries: Entry[]): Promise<CountersignedReceipt[]> {
  const held = new Map<string, SignedReceipt>()
  const receipts: CountersignedReceipt[] = []
  for (const [i, entry] of entries.entries()) {
    try {
      const r = entryToReceipt(entry)
      await verifyReceipt(r)
      const id = receiptId(r)
      // a repeated entry would be a replay inside the file
      if (checkProgress(held.get(id), r) === 'duplicate') throw new Error('repeats an earlier entry of the session')
      held.set(id, r)
      receipts.push(r)
    } catch (err: any) {
      const reason = err instanceof ReceiptError ? `${err.code}: ${err.message}` : err.message
      throw new ExportFormatError(i + 1, reason, entry.sessionId)
    }
  }
  return receipts
}

function checkDeclaredTotals (declared: unknown, computed: ExportTotals): void {
  const parsed = totalsSchema.safeParse(declared)
  if (!parsed.success) throw new ExportFormatError(0, `totals: ${firstIssue(parsed.error)}`)
  const expected = totalsToJson(computed)
  for (const key of Object.keys(expected) as Array<keyof typeof expected>) {
    if (parsed.data[key] !== expected[key]) {
      throw new ExportFormatError(0, `totals.${key} is ${parsed.data[key]}, the receipts add up to ${expected[key]}`)
    }
  }
}

/**
 * Checks an export made by exportReceipts(): format, every signature,
 * monotonic counters per session and (JSON) the declared totals. Never
 * throws on bad input; the result names the first bad entry.
 */
export async function verifyExport (text: string): Promise<VerifyExportResult> {
  const format: ExportFormat = text.trimStart().startsWith('{') ? 'json' : 'csv'
  try {
    const parsed = format === 'json' ? parseJson(text) : { entries: parseCsv(text), totals: undefined }
    const receipts = await checkEntries(parsed.entries)
    const totals = computeTotals(receipts)
    if (format === 'json') checkDeclaredTotals(parsed.totals, totals)
    return { ok: true, format, entries: receipts.length, totals, receipts }
  } catch (err: any) {
    if (err instanceof ExportFormatError) {
      return { ok: false, index: err.index, ...(err.sessionId != null ? { sessionId: String(err.sessionId) } : {}), reason: err.message }
    }
    return { ok: false, index: 0, reason: err?.message ?? String(err) }
  }
}
