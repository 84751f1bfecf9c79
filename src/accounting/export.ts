/**
 * Receipt exports (`spareband receipts --export csv|json`) and their offline
 * check (`spareband verify FILE`). An export is evidence a member can hand to
 * someone who trusts no node: every entry carries both signatures, and the
 * verifier re-checks them, the per-session monotonicity and the totals.
 *
 * Both formats declare their totals, so a file that lost entries fails: JSON
 * in its `totals` object, CSV in a last row in the same columns (see
 * csvTotalsLine). Signatures alone cannot catch a dropped entry: each
 * remaining one still verifies.
 *
 * Parsing is strict on purpose (lower-case hex, canonical decimals and peer
 * ids, no unknown JSON keys, canonical CSV quoting): any single altered byte
 * of a field, counter or signature makes the file fail, instead of being
 * read as an equivalent spelling. What editors and transfers do to a text
 * file as a whole is accepted: CRLF line endings (on every line of a CSV)
 * and a leading byte order mark.
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
  /** index: the first bad entry, 1-based; 0 for the file as a whole (empty, not an export, header, version, totals, truncated). */
  | { ok: false, index: number, sessionId?: string, reason: string }

/** The fields of one entry, all as strings, in file order. */
const FIELDS = ['sessionId', 'consumer', 'exit', 'bytesUp', 'bytesDown', 'seq', 'startedAt', 'updatedAt', 'pricePerGb', 'costMicro', 'consumerSig', 'exitSig'] as const
type Field = typeof FIELDS[number]
type Entry = Record<Field, string>

const CSV_HEADER = 'session_id,consumer,exit,bytes_up,bytes_down,seq,started_at,updated_at,price_per_gb,cost_micro,consumer_sig,exit_sig'
/** The session_id cell of the CSV totals row. */
const CSV_TOTALS_LABEL = /^totals: (0|[1-9][0-9]*) entries in (0|[1-9][0-9]*) sessions$/
/** Columns the CSV totals row fills; the others stay empty. */
const CSV_TOTALS_FIELDS = new Set<Field>(['sessionId', 'bytesUp', 'bytesDown', 'costMicro'])
const BYTE_ORDER_MARK = '\ufeff'

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

/**
 * A spreadsheet reads a cell that starts with one of these as a formula; a
 * session id is whatever the consumer wrote, so "=HYPERLINK(...)" is a
 * valid one. Such a value (and one starting with the quote itself, so the
 * escape can be undone) is written after a single quote, which spreadsheets
 * show as text and verify takes off again.
 */
const FORMULA_START = /^[=+\-@\t\r']/

/** RFC 4180 quoting, only where needed, so each value has one spelling. */
function csvField (value: string): string {
  const text = FORMULA_START.test(value) ? `'${value}` : value
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

function csvLine (entry: Entry): string {
  return FIELDS.map(f => csvField(entry[f])).join(',')
}

/**
 * The last row of a CSV export: the JSON totals in the same columns, so the
 * file stays one table a spreadsheet opens, with the sums under the columns
 * they sum and the counts in the first cell:
 * `totals: 3 entries in 2 sessions,,,<bytes_up>,<bytes_down>,,,,,<cost_micro>,,`.
 * A last row rather than two more columns on every row (index, count): an
 * export of no receipts then still differs from one cut after its header.
 * No receipt row looks like it: a receipt's consumer and exit are never empty.
 */
function csvTotalsLine (t: ExportTotals): string {
  const entry = Object.fromEntries(FIELDS.map(f => [f, ''])) as Entry
  entry.sessionId = `totals: ${t.entries} entries in ${t.sessions} sessions`
  entry.bytesUp = t.bytesUp.toString()
  entry.bytesDown = t.bytesDown.toString()
  entry.costMicro = t.costMicro.toString()
  return csvLine(entry)
}

/**
 * Writes an export a piece at a time, byte for byte what exportReceipts()
 * writes: start(), then add() for each receipt, then end(), each returning
 * the text to append. It keeps only each session's newest counters for the
 * totals, so a caller that reads the receipts a few at a time (the node's
 * API, see accounting-report.ts) never holds the whole ledger or the whole
 * document. Receipts of one session must come in increasing seq order.
 */
export class ExportWriter {
  private readonly newest = new Map<string, { seq: bigint, bytesUp: bigint, bytesDown: bigint, costMicro: bigint }>()
  private entries = 0

  constructor (readonly format: ExportFormat) {}

  start (): string {
    return this.format === 'csv' ? `${CSV_HEADER}\n` : `{\n  "version": ${EXPORT_VERSION},\n  "receipts": [`
  }

  /** Throws ReceiptError for a receipt with a missing field. */
  add (r: Receipt): string {
    const entry = toEntry(r)
    // toEntry() checked every field is there
    const c = r as CountersignedReceipt
    const id = receiptId(c)
    const held = this.newest.get(id)
    if (held == null || c.seq > held.seq) this.newest.set(id, { seq: c.seq, bytesUp: c.bytesUp, bytesDown: c.bytesDown, costMicro: BigInt(entry.costMicro) })
    this.entries++
    if (this.format === 'csv') return `${csvLine(entry)}\n`
    return `${this.entries === 1 ? '' : ','}\n${indent(JSON.stringify(entry, null, 2), '    ')}`
  }

  get totals (): ExportTotals {
    const totals: ExportTotals = { entries: this.entries, sessions: this.newest.size, bytesUp: 0n, bytesDown: 0n, costMicro: 0n }
    for (const n of this.newest.values()) {
      totals.bytesUp += n.bytesUp
      totals.bytesDown += n.bytesDown
      totals.costMicro += n.costMicro
    }
    return totals
  }

  end (): string {
    if (this.format === 'csv') return `${csvTotalsLine(this.totals)}\n`
    const totals = JSON.stringify(totalsToJson(this.totals), null, 2).replaceAll('\n', '\n  ')
    return `${this.entries === 0 ? '' : '\n  '}],\n  "totals": ${totals}\n}\n`
  }
}

function indent (text: string, by: string): string {
  return by + text.replaceAll('\n', `\n${by}`)
}

/**
 * Countersigned receipts as a JSON or CSV document. Receipts of one session
 * must come in increasing seq order (the ledger stores one per session).
 * Throws ReceiptError for a receipt with a missing field.
 */
export function exportReceipts (receipts: Iterable<Receipt>, format: ExportFormat): string {
  const writer = new ExportWriter(format)
  const parts = [writer.start()]
  for (const r of receipts) parts.push(writer.add(r))
  parts.push(writer.end())
  return parts.join('')
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

/** What a file declares besides its entries, checked against them by checkDeclaredTotals(). */
interface ParsedExport {
  format: ExportFormat
  entries: Entry[]
  totals: unknown
}

/** One CSV line as an entry, the header's fields by name; `index` names it in errors. */
function csvEntry (line: string, index: number): Entry {
  const values = splitCsvLine(line, index)
  if (values.length !== FIELDS.length) throw new ExportFormatError(index, `${values.length} fields, expected ${FIELDS.length}`)
  // the formula escape (see csvField) comes off: what was signed is the value after it
  const entry = Object.fromEntries(FIELDS.map((f, k) => [f, values[k].startsWith("'") ? values[k].slice(1) : values[k]])) as Entry
  // one spelling per value: re-quoting must give back the line
  if (csvLine(entry) !== line) throw new ExportFormatError(index, 'line is not in canonical CSV form', entry.sessionId)
  return entry
}

/** A receipt row always names its consumer and exit; the totals row never does. */
function isTotalsRow (entry: Entry): boolean {
  return entry.consumer === '' && entry.exit === ''
}

/** The totals a CSV totals row declares, in the shape of the JSON `totals`. */
function csvTotals (line: string): z.infer<typeof totalsSchema> {
  const entry = csvEntry(line, 0)
  const label = CSV_TOTALS_LABEL.exec(entry.sessionId)
  if (label == null) throw new ExportFormatError(0, `totals row: the first cell is "${entry.sessionId}", not "totals: N entries in M sessions"`)
  for (const f of FIELDS) {
    if (f === 'sessionId') continue
    if (CSV_TOTALS_FIELDS.has(f)) {
      if (!DECIMAL.test(entry[f])) throw new ExportFormatError(0, `totals row: ${csvColumn(f)} "${entry[f]}" is not a canonical decimal`)
    } else if (f !== 'consumer' && f !== 'exit' && entry[f] !== '') {
      throw new ExportFormatError(0, `totals row: ${csvColumn(f)} must be empty`)
    }
  }
  return { entries: Number(label[1]), sessions: Number(label[2]), bytesUp: entry.bytesUp, bytesDown: entry.bytesDown, costMicro: entry.costMicro }
}

function parseCsv (text: string): ParsedExport {
  // a file whose every line ends in CRLF (a Windows checkout, a mail client) is the same file
  const crlf = text.includes('\r\n')
  const lines = text.split(crlf ? '\r\n' : '\n')
  if (lines.at(-1) === '') lines.pop()
  if (crlf && lines.some(line => line.includes('\n'))) throw new ExportFormatError(0, 'mixed line endings: some lines end in CRLF, others in LF')
  if (lines[0] !== CSV_HEADER) throw new ExportFormatError(0, 'not a spareband receipt export (unknown CSV header)')
  const rows = lines.slice(1)
  // first the end of the file: a cut file should say so, not fail on its last, partial, row
  let last: Entry | undefined
  try {
    last = rows.length === 0 ? undefined : csvEntry(rows[rows.length - 1], rows.length)
  } catch {}
  if (last == null || !isTotalsRow(last)) {
    throw new ExportFormatError(0, rows.length === 0
      ? 'no rows, not even the totals row: the file is truncated after its header'
      : 'no totals row at the end: the file is truncated, or is a CSV export of an older spareband, which wrote none (export it again)')
  }
  const totals = csvTotals(rows[rows.length - 1])
  const entries = rows.slice(0, -1).map((line, i) => {
    const entry = csvEntry(line, i + 1)
    if (isTotalsRow(entry)) throw new ExportFormatError(i + 1, 'a totals row before the last row: rows were added after it, or files joined')
    return entry
  })
  return { format: 'csv', entries, totals }
}

function firstIssue (error: z.ZodError): string {
  const issue = error.issues[0]
  return `${issue.path.join('.') || 'document'}: ${issue.message}`
}

function jsonKind (doc: unknown): string {
  if (doc === null) return 'JSON null'
  return `a JSON ${Array.isArray(doc) ? 'array' : typeof doc}`
}

function parseJson (doc: unknown): ParsedExport {
  if (doc == null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ExportFormatError(0, `not a spareband receipt export: the file is ${jsonKind(doc)}, not an object with "version", "receipts" and "totals"`)
  }
  if (!('version' in doc) || !('receipts' in doc)) {
    throw new ExportFormatError(0, 'not a spareband receipt export: a JSON object without "version" and "receipts"')
  }
  if (doc.version !== EXPORT_VERSION) {
    throw new ExportFormatError(0, `export version ${JSON.stringify(doc.version)} is not one this spareband reads (${EXPORT_VERSION})`)
  }
  const file = fileSchema.safeParse(doc)
  if (!file.success) throw new ExportFormatError(0, `not a version ${EXPORT_VERSION} receipt export: ${firstIssue(file.error)}`)
  const entries = file.data.receipts.map((raw, i) => {
    const entry = entrySchema.safeParse(raw)
    if (!entry.success) throw new ExportFormatError(i + 1, firstIssue(entry.error), (raw as any)?.sessionId)
    return entry.data
  })
  return { format: 'json', entries, totals: file.data.totals }
}

/**
 * Tells the formats apart by parsing: a file that is JSON is read as a JSON
 * export, one that opens with the CSV header as a CSV export. Anything else
 * is a whole-file error that says what the file is not.
 */
function parseExport (text: string): ParsedExport {
  if (text.startsWith(BYTE_ORDER_MARK)) text = text.slice(BYTE_ORDER_MARK.length)
  if (text.trim() === '') throw new ExportFormatError(0, text === '' ? 'empty file' : 'empty file (white space only)')
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err: any) {
    const newline = text.indexOf('\n')
    const firstLine = (newline === -1 ? text : text.slice(0, newline)).replace(/\r$/, '')
    if (firstLine === CSV_HEADER) return parseCsv(text)
    if (/^\s*[[{]/.test(text)) throw new ExportFormatError(0, `not valid JSON (a truncated JSON export?): ${err.message}`)
    const shown = firstLine.length > 60 ? `${firstLine.slice(0, 60)}...` : firstLine
    throw new ExportFormatError(0, `not a spareband receipt export: neither JSON nor a CSV with the spareband header (first line: ${JSON.stringify(shown)})`)
  }
  return parseJson(doc)
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

const CSV_COLUMNS = Object.fromEntries(CSV_HEADER.split(',').map((name, k) => [FIELDS[k], name])) as Record<Field, string>

function csvColumn (field: Field): string {
  return CSV_COLUMNS[field]
}

/** How a file names each total, in messages: `totals.bytesUp` in JSON, the totals row's `bytes_up` in CSV. */
function totalName (format: ExportFormat, key: keyof ExportTotals): string {
  if (format === 'json') return `totals.${key}`
  return key === 'entries' || key === 'sessions' ? `the totals row's ${key} count` : `the totals row's ${csvColumn(key)}`
}

function checkDeclaredTotals (format: ExportFormat, declared: unknown, computed: ExportTotals): void {
  const parsed = totalsSchema.safeParse(declared)
  if (!parsed.success) throw new ExportFormatError(0, `totals: ${firstIssue(parsed.error)}`)
  const expected = totalsToJson(computed)
  for (const key of Object.keys(expected) as Array<keyof typeof expected>) {
    const value = parsed.data[key]
    if (value === expected[key]) continue
    if (key === 'entries') {
      const what = `${format === 'csv' ? 'rows' : 'entries'} were ${(value as number) > expected.entries ? 'dropped' : 'added'}`
      const declaredText = format === 'csv' ? `the totals row counts ${value} entries` : `totals.entries is ${value}`
      throw new ExportFormatError(0, `${declaredText}, the file holds ${expected.entries}: ${what}`)
    }
    throw new ExportFormatError(0, `${totalName(format, key)} is ${value}, the receipts add up to ${expected[key]}`)
  }
}

/**
 * Checks an export made by exportReceipts(): format, every signature,
 * monotonic counters per session and the declared totals. Never throws on
 * bad input; the result names the first bad entry, or index 0 for a
 * problem of the file as a whole.
 */
export async function verifyExport (text: string): Promise<VerifyExportResult> {
  try {
    const parsed = parseExport(text)
    const receipts = await checkEntries(parsed.entries)
    const totals = computeTotals(receipts)
    checkDeclaredTotals(parsed.format, parsed.totals, totals)
    return { ok: true, format: parsed.format, entries: receipts.length, totals, receipts }
  } catch (err: any) {
    if (err instanceof ExportFormatError) {
      return { ok: false, index: err.index, ...(err.sessionId != null ? { sessionId: String(err.sessionId) } : {}), reason: err.message }
    }
    return { ok: false, index: 0, reason: err?.message ?? String(err) }
  }
}
