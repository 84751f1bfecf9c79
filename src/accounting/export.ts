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
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { z } from 'zod'
import { costMicro } from './credits.ts'
import { ReceiptError, ReceiptErrorCode } from './errors.ts'
import { checkProgress, checkReceiptFields, checkReceiptSignatures, ed25519PeerFromBytes, prepareSignatureCheck, receiptId } from './receipts.ts'
import { SignaturePool, SignatureThreadError } from './signature-pool.ts'
import { CLOSE_BRACE, CLOSE_BRACKET, COLON, COMMA, JsonSyntaxError, OPEN_BRACE, OPEN_BRACKET, QUOTE, SourceError, TextReader } from './text-reader.ts'
import type { CountersignedReceipt, Progress, Receipt, SignedReceipt } from './receipts.ts'
import type { SignatureFailure, SignatureJob } from './signature-pool.ts'

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

export interface VerifyExportFailure {
  ok: false
  /** The first bad entry, 1-based; 0 for the file as a whole (empty, not an export, header, version, totals, truncated). */
  index: number
  sessionId?: string
  reason: string
}

export interface VerifyExportOptions {
  /** Also return every verified receipt (memory grows with the file: for small ones). */
  keepReceipts?: boolean
  /**
   * Check signatures on this many worker threads while the file is read
   * (most of the time goes there); 0 checks them in turn, here.
   *
   * @default 0
   */
  signatureThreads?: number
}

export type VerifyExportStreamResult =
  | { ok: true, format: ExportFormat, entries: number, totals: ExportTotals }
  | VerifyExportFailure

export type VerifyExportResult =
  | { ok: true, format: ExportFormat, entries: number, totals: ExportTotals, receipts: CountersignedReceipt[] }
  | VerifyExportFailure

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

function firstIssue (error: z.ZodError): string {
  const issue = error.issues[0]
  return `${issue.path.join('.') || 'document'}: ${issue.message}`
}

function jsonKind (doc: unknown): string {
  if (doc === null) return 'JSON null'
  return `a JSON ${Array.isArray(doc) ? 'array' : typeof doc}`
}

function parseDecimal (entry: Entry, field: Field): bigint {
  if (!DECIMAL.test(entry[field])) throw new Error(`${field} "${entry[field]}" is not a canonical decimal`)
  return BigInt(entry[field])
}

/**
 * Peer ids by their text. An export names the same few peers on every
 * line, and decoding one (base58, its key, the canonical spelling) cost
 * more than a tenth of verifying an entry. Cleared when full: bounded.
 */
const PEER_TEXT_CACHE_MAX = 4096
const peerTextCache = new Map<string, Uint8Array>()

function parsePeer (entry: Entry, field: 'consumer' | 'exit'): Uint8Array {
  const text = entry[field]
  const cached = peerTextCache.get(text)
  if (cached != null) return cached
  let bytes: Uint8Array
  try {
    const peer = peerIdFromString(text)
    if (peer.toString() !== text) throw new Error('non-canonical')
    bytes = peer.toMultihash().bytes
  } catch {
    throw new Error(`${field} "${text}" is not a peer id`)
  }
  ed25519PeerFromBytes(bytes, field)
  if (peerTextCache.size >= PEER_TEXT_CACHE_MAX) peerTextCache.clear()
  peerTextCache.set(text, bytes)
  return bytes
}

function parseSignature (entry: Entry, field: 'consumerSig' | 'exitSig'): Uint8Array {
  if (!SIGNATURE_HEX.test(entry[field])) throw new Error(`${field} is not 128 lower-case hex digits`)
  // through Buffer: the multiformats base16 codec took longer than the regex
  return new Uint8Array(Buffer.from(entry[field], 'hex'))
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

/** The counters checkProgress() compares, which are all the totals need too. */
const SESSION_COUNTERS = ['seq', 'bytesUp', 'bytesDown', 'startedAt', 'updatedAt', 'pricePerGb'] as const
const SIGNATURE_PRESENT = new Uint8Array(0)

/**
 * The newest entry of every session seen so far, as far as monotonicity
 * and the totals need it: the session's receipt id (32 bytes, kept as a
 * 32-character string) and six counters (seq, bytes up and down, started
 * and updated at, price: 48 bytes in one growing BigUint64Array, outside
 * the JS heap). About 150 bytes a session with the Map's own, and nothing
 * else of any entry. A session's entries may be anywhere in the file (a
 * ledger exports one per session, newest first), so a repeated or
 * regressing entry can only be caught with every session remembered.
 */
class SessionTable {
  private readonly slots = new Map<string, number>()
  private counters = new BigUint64Array(SESSION_COUNTERS.length * 1024)

  get size (): number {
    return this.slots.size
  }

  /** The held entry, as much of a receipt as checkProgress() reads. */
  get (key: string, sessionId: string): SignedReceipt | undefined {
    const slot = this.slots.get(key)
    if (slot == null) return undefined
    const at = slot * SESSION_COUNTERS.length
    const c = this.counters
    // every entry verified here had both signatures: exitSig only needs to be there
    return { sessionId, seq: c[at], bytesUp: c[at + 1], bytesDown: c[at + 2], startedAt: c[at + 3], updatedAt: c[at + 4], pricePerGb: c[at + 5], consumerSig: SIGNATURE_PRESENT, exitSig: SIGNATURE_PRESENT } as unknown as SignedReceipt
  }

  set (key: string, r: CountersignedReceipt): void {
    let slot = this.slots.get(key)
    if (slot == null) {
      slot = this.slots.size
      this.slots.set(key, slot)
      if ((slot + 1) * SESSION_COUNTERS.length > this.counters.length) {
        const grown = new BigUint64Array(this.counters.length * 2)
        grown.set(this.counters)
        this.counters = grown
      }
    }
    const at = slot * SESSION_COUNTERS.length
    for (let k = 0; k < SESSION_COUNTERS.length; k++) this.counters[at + k] = r[SESSION_COUNTERS[k]]
  }
}

/** Receipts whose signatures go to the pool together: about 25 ms of checks. */
const SIGNATURE_BATCH = 128

/**
 * Checks entries one at a time, in file order: fields, both signatures,
 * monotonicity against the session's held entry, and the running totals
 * (each session's newest entry, counted once).
 *
 * With a SignaturePool the signatures are checked there, a batch at a
 * time, while entries after them are read; the answer is the same as
 * checking in turn: a batch's failure is its first bad entry, batches are
 * awaited in order, and an entry's own signatures are checked before its
 * other faults are named (settle()). At most a few batches are in flight.
 */
class EntryChecker {
  private readonly sessions = new SessionTable()
  private entries = 0
  private bytesUp = 0n
  private bytesDown = 0n
  private costMicro = 0n
  private batch: SignatureJob[] = []
  private batchSessions: string[] = []
  private readonly inFlight: Array<{ answer: Promise<SignatureFailure | undefined>, sessions: Map<number, string> }> = []

  /**
   * `receipts`: where to keep every verified receipt, when the caller wants
   * them (verifyExport). `pool`: where to check signatures; here when none.
   */
  constructor (private readonly receipts?: CountersignedReceipt[], private readonly pool?: SignaturePool) {}

  get kept (): CountersignedReceipt[] | undefined {
    return this.receipts
  }

  /** Throws ExportFormatError naming the entry, by its 1-based `index`. */
  add (entry: Entry, index: number): void {
    try {
      const r = entryToReceipt(entry)
      const job = this.pool == null ? undefined : prepareSignatureCheck(r)
      if (job == null) checkReceiptSignatures(r)
      const key = receiptId(r, 'binary')
      const held = this.sessions.get(key, r.sessionId)
      let progress: Progress
      try {
        progress = checkProgress(held, r)
      } catch (err) {
        // checked in turn, a bad signature of this entry is what is named
        if (job != null) checkReceiptSignatures(r)
        throw err
      }
      // a repeated entry would be a replay inside the file
      if (progress === 'duplicate') {
        if (job != null) checkReceiptSignatures(r)
        throw new Error('repeats an earlier entry of the session')
      }
      // totals count a session's newest entry: replace what the held one added
      this.bytesUp += r.bytesUp - (held?.bytesUp ?? 0n)
      this.bytesDown += r.bytesDown - (held?.bytesDown ?? 0n)
      this.costMicro += costMicro(r.bytesUp + r.bytesDown, r.pricePerGb) - (held == null ? 0n : costMicro(held.bytesUp + held.bytesDown, held.pricePerGb))
      this.sessions.set(key, r)
      this.entries++
      // peer bytes are shared through the cache: a kept receipt gets its own
      this.receipts?.push({ ...r, consumer: new Uint8Array(r.consumer), exit: new Uint8Array(r.exit) })
      if (job != null) {
        this.batch.push({ index, ...job, consumerSig: r.consumerSig, exitSig: r.exitSig })
        this.batchSessions.push(r.sessionId)
        if (this.batch.length >= SIGNATURE_BATCH) this.send()
      }
    } catch (err: any) {
      if (err instanceof ExportFormatError) throw err
      const reason = err instanceof ReceiptError ? `${err.code}: ${err.message}` : err.message
      throw new ExportFormatError(index, reason, entry.sessionId)
    }
  }

  private send (): void {
    if (this.pool == null || this.batch.length === 0) return
    const sessions = new Map(this.batch.map((job, k) => [job.index, this.batchSessions[k]]))
    this.inFlight.push({ answer: this.pool.check(this.batch), sessions })
    this.batch = []
    this.batchSessions = []
  }

  /** Waits while more than two batches a thread are in flight; throws the first bad signature. */
  async pace (): Promise<void> {
    if (this.pool == null) return
    while (this.inFlight.length > 2 * this.pool.size) {
      const failure = await this.next()
      if (failure != null) throw failure
    }
  }

  private async next (): Promise<ExportFormatError | undefined> {
    const { answer, sessions } = this.inFlight.shift()!
    const failure = await answer
    if (failure == null) return undefined
    const sessionId = sessions.get(failure.index)
    const err = failure.which === 'consumer'
      ? new ReceiptError({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE, sessionId })
      : new ReceiptError({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE, sessionId })
    return new ExportFormatError(failure.index, `${err.code}: ${err.message}`, sessionId)
  }

  /**
   * Waits for every signature sent; returns the first bad one. Every entry
   * sent came before anything the reader found wrong since, so a bad
   * signature, when there is one, is the file's first fault.
   */
  async settle (): Promise<ExportFormatError | undefined> {
    this.send()
    while (this.inFlight.length > 0) {
      const failure = await this.next()
      if (failure != null) {
        // the rest are answered, or end with the pool
        this.inFlight.length = 0
        return failure
      }
    }
    return undefined
  }

  get totals (): ExportTotals {
    return { entries: this.entries, sessions: this.sessions.size, bytesUp: this.bytesUp, bytesDown: this.bytesDown, costMicro: this.costMicro }
  }
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

// CSV, a line at a time

const MIXED_LINE_ENDINGS = 'mixed line endings: some lines end in CRLF, others in LF'

/** A line of nothing but blanks (not the end of the file, undefined). */
function blank (line: string | undefined): boolean {
  return line != null && line.trim() === ''
}

/**
 * The lines of a CSV export, each ended as the header is: a file whose
 * every line ends in CRLF (a Windows checkout, a mail client) is the same
 * file. The last line may have no ending, and is then taken as it is.
 */
class CsvLines {
  private crlf = false
  private count = 0
  /** Blank lines read ahead, and the line after them, still to be given. */
  private blanks = 0
  private after: string | undefined

  constructor (private readonly reader: TextReader) {}

  /**
   * The next line. Blank lines (or only blanks) at the end of the file are not given: a
   * tool's extra newline (`jq -r .text` of the API's export) is no row,
   * and the file is whole. A blank line before another line is a row (and
   * an invalid one).
   */
  async next (): Promise<string | undefined> {
    if (this.blanks > 0) {
      this.blanks--
      return ''
    }
    if (this.after != null) {
      const line = this.after
      this.after = undefined
      return line
    }
    let line = await this.line()
    if (!blank(line)) return line
    let blanks = 1
    while (blank(line = await this.line())) blanks++
    if (line == null) return undefined
    this.blanks = blanks - 1
    this.after = line
    return ''
  }

  private async line (): Promise<string | undefined> {
    const line = await this.reader.line()
    if (line == null) return undefined
    if (!line.terminated) return line.text
    // a blank line is no row (trailing blanks are dropped, another is refused as a row): its ending says nothing of the file's
    if (blank(line.text)) return ''
    const cr = line.text.endsWith('\r')
    if (this.count++ === 0) this.crlf = cr
    else if (cr !== this.crlf) throw new ExportFormatError(0, MIXED_LINE_ENDINGS)
    return cr ? line.text.slice(0, -1) : line.text
  }
}

/**
 * Reads a CSV export a line at a time, each receipt row checked as soon as
 * the next line shows it is not the last: the last line must be the totals
 * row, and a file cut short says so rather than failing on its partial last
 * row. Returns the totals the file declares.
 */
async function readCsv (reader: TextReader, checker: EntryChecker): Promise<unknown> {
  const lines = new CsvLines(reader)
  if (await lines.next() !== CSV_HEADER) throw new ExportFormatError(0, 'not a spareband receipt export (unknown CSV header)')
  let held = await lines.next()
  if (held == null) throw new ExportFormatError(0, 'no rows, not even the totals row: the file is truncated after its header')
  let index = 0
  let totalsRowAt: number | undefined
  while (true) {
    const line = await lines.next()
    if (line == null) break
    index++
    // after a totals row that is not the last, only the file's last line matters (see below)
    if (totalsRowAt == null) {
      const entry = csvEntry(held, index)
      if (isTotalsRow(entry)) totalsRowAt = index
      else {
        checker.add(entry, index)
        await checker.pace()
      }
    }
    held = line
  }
  let last: Entry | undefined
  try {
    last = csvEntry(held, index + 1)
  } catch {}
  if (last == null || !isTotalsRow(last)) {
    throw new ExportFormatError(0, 'no totals row at the end: the file is truncated, or is a CSV export of an older spareband, which wrote none (export it again)')
  }
  if (totalsRowAt != null) throw new ExportFormatError(totalsRowAt, 'a totals row before the last row: rows were added after it, or files joined')
  return csvTotals(held)
}

// JSON, a value at a time


/**
 * Reads a JSON export: the top-level object a member at a time, and its
 * `receipts` array an entry at a time, each parsed by JSON.parse and
 * checked as it comes; every other member (version, totals) is small and
 * kept. Then the document without its entries gets the checks the whole
 * document got before entries were streamed (keys, version), and its
 * declared totals are returned.
 */
async function readJson (reader: TextReader, checker: EntryChecker): Promise<unknown> {
  if (await reader.jsonPeek() !== OPEN_BRACE) {
    // not an export: still tell a JSON value from a broken file, without holding the value
    const kind = await reader.jsonPeek() === OPEN_BRACKET ? await skipJsonArray(reader) : jsonKind(await reader.jsonValue())
    await jsonEnd(reader)
    throw new ExportFormatError(0, `not a spareband receipt export: the file is ${kind}, not an object with "version", "receipts" and "totals"`)
  }
  await reader.jsonExpect(OPEN_BRACE, '"{"')
  // the document as JSON.parse() would give it, but for its entries
  const doc: Record<string, unknown> = {}
  if (await reader.jsonPeek() === CLOSE_BRACE) await reader.jsonExpect(CLOSE_BRACE, '"}"')
  else {
    while (true) {
      if (await reader.jsonPeek() !== QUOTE) reader.unexpected(await reader.jsonPeek(), 'a property name in double quotes')
      const key = await reader.jsonValue() as string
      await reader.jsonExpect(COLON, '":"')
      // JSON.parse() would keep the last of two: an export has one list of receipts, and which is read must not be in doubt
      if (key === 'receipts' && Object.hasOwn(doc, 'receipts')) throw new ExportFormatError(0, `not a version ${EXPORT_VERSION} receipt export: "receipts" appears twice`)
      let value: unknown
      if (key === 'receipts' && await reader.jsonPeek() === OPEN_BRACKET) {
        // a version this spareband does not read may have other entries: say so rather than blame its first entry
        if (Object.hasOwn(doc, 'version')) checkJsonVersion(doc.version)
        await readJsonEntries(reader, checker)
        value = []
      } else {
        value = await reader.jsonValue()
      }
      // as JSON.parse() defines members: "__proto__" is a key like any other
      Object.defineProperty(doc, key, { value, enumerable: true, writable: true, configurable: true })
      if (await reader.jsonOneOf([COMMA, CLOSE_BRACE], '"," or "}"') === CLOSE_BRACE) break
    }
  }
  await jsonEnd(reader)
  if (!('version' in doc) || !('receipts' in doc)) {
    throw new ExportFormatError(0, 'not a spareband receipt export: a JSON object without "version" and "receipts"')
  }
  checkJsonVersion(doc.version)
  const file = fileSchema.safeParse(doc)
  if (!file.success) throw new ExportFormatError(0, `not a version ${EXPORT_VERSION} receipt export: ${firstIssue(file.error)}`)
  return file.data.totals
}

function checkJsonVersion (version: unknown): void {
  if (version !== EXPORT_VERSION) {
    throw new ExportFormatError(0, `export version ${JSON.stringify(version)} is not one this spareband reads (${EXPORT_VERSION})`)
  }
}

async function readJsonEntries (reader: TextReader, checker: EntryChecker): Promise<void> {
  await reader.jsonExpect(OPEN_BRACKET, '"["')
  if (await reader.jsonPeek() === CLOSE_BRACKET) {
    await reader.jsonExpect(CLOSE_BRACKET, '"]"')
    return
  }
  for (let index = 1; ; index++) {
    const raw = await reader.jsonValue()
    // what follows first: a broken file (a line lost, a stray character) is a broken file, not a bad entry
    const end = await reader.jsonOneOf([COMMA, CLOSE_BRACKET], '"," or "]"') === CLOSE_BRACKET
    const entry = entrySchema.safeParse(raw)
    if (!entry.success) throw new ExportFormatError(index, firstIssue(entry.error), (raw as any)?.sessionId)
    checker.add(entry.data, index)
    await checker.pace()
    if (end) return
  }
}

/** Reads a JSON array a value at a time, keeping none; returns its kind. */
async function skipJsonArray (reader: TextReader): Promise<string> {
  await reader.jsonExpect(OPEN_BRACKET, '"["')
  if (await reader.jsonPeek() === CLOSE_BRACKET) await reader.jsonExpect(CLOSE_BRACKET, '"]"')
  else {
    do await reader.jsonValue()
    while (await reader.jsonOneOf([COMMA, CLOSE_BRACKET], '"," or "]"') === COMMA)
  }
  return jsonKind([])
}

async function jsonEnd (reader: TextReader): Promise<void> {
  const c = await reader.jsonPeek()
  if (c !== -1) reader.unexpected(c, 'nothing after the JSON value')
}

// the file

const FIRST_LINE_SHOWN = 60

/**
 * Checks an export made by exportReceipts() or ExportWriter, read a chunk
 * at a time (UTF-8 bytes, as a file is read, or text): format, every
 * signature, monotonic counters per session and the declared totals, each
 * entry as it comes. Memory is a chunk, the entry being read and, per
 * session, what SessionTable keeps; not the file, and not its entries.
 *
 * Never throws on bad contents: the result names the first bad entry, or
 * index 0 for a problem of the file as a whole. A file with one fault gets
 * the message it got when files were read whole; in one with several, the
 * first in file order is named (once, whole-file problems came first).
 * Throws only what the source throws (a file that cannot be read).
 */
export async function verifyExportStream (source: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>, options: VerifyExportOptions = {}): Promise<VerifyExportStreamResult & { receipts?: CountersignedReceipt[] }> {
  const pool = (options.signatureThreads ?? 0) > 0 ? new SignaturePool(options.signatureThreads ?? 0) : undefined
  try {
    return await verifyEntries(source, new EntryChecker(options.keepReceipts === true ? [] : undefined, pool))
  } finally {
    await pool?.close()
  }
}

async function verifyEntries (source: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>, checker: EntryChecker): Promise<VerifyExportStreamResult & { receipts?: CountersignedReceipt[] }> {
  const reader = new TextReader(source)
  const receipts = checker.kept
  let format: ExportFormat | undefined
  let head = ''
  let jsonLike = false
  try {
    // what editors do to a text file: a byte order mark before it
    if (await reader.peekText(1) === BYTE_ORDER_MARK) await reader.skip(1)
    head = await reader.peekText(CSV_HEADER.length + 2)
    const afterHeader = head.slice(CSV_HEADER.length)
    // the first line, without a CR that ends it, is the header
    if (head.startsWith(CSV_HEADER) && (afterHeader === '' || afterHeader[0] === '\n' || afterHeader === '\r' || afterHeader === '\r\n')) {
      format = 'csv'
      const declared = await readCsv(reader, checker)
      await settled(checker)
      checkDeclaredTotals(format, declared, checker.totals)
      return { ok: true, format, entries: checker.totals.entries, totals: checker.totals, ...(receipts != null ? { receipts } : {}) }
    }
    head = await reader.peekText(4 * FIRST_LINE_SHOWN)
    const start = reader.position
    // JSON allows four white space characters before its value; trim() (is the file empty?) takes more
    let otherSpace = false
    const first = await reader.skipWhile(c => {
      if (!/\s/.test(String.fromCharCode(c))) return false
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) otherSpace = true
      return true
    })
    if (first === -1) throw new ExportFormatError(0, reader.position === start ? 'empty file' : 'empty file (white space only)')
    jsonLike = first === OPEN_BRACE || first === OPEN_BRACKET
    if (otherSpace) throw new JsonSyntaxError('white space JSON does not allow before the value', reader.position)
    format = 'json'
    const declared = await readJson(reader, checker)
    await settled(checker)
    checkDeclaredTotals(format, declared, checker.totals)
    return { ok: true, format, entries: checker.totals.entries, totals: checker.totals, ...(receipts != null ? { receipts } : {}) }
  } catch (caught: any) {
    if (caught instanceof SourceError) throw caught.cause
    // the checking failed, not the file: no verdict to give
    if (caught instanceof SignatureThreadError) throw caught
    // a bad signature of an entry read before this fault is the file's first
    const err = (await checker.settle()) ?? caught
    if (err instanceof JsonSyntaxError) {
      if (jsonLike) return { ok: false, index: 0, reason: `not valid JSON (a truncated JSON export?): ${err.message}` }
      const newline = head.indexOf('\n')
      const firstLine = (newline === -1 ? head : head.slice(0, newline)).replace(/\r$/, '')
      const shown = firstLine.length > FIRST_LINE_SHOWN ? `${firstLine.slice(0, FIRST_LINE_SHOWN)}...` : firstLine
      return { ok: false, index: 0, reason: `not a spareband receipt export: neither JSON nor a CSV with the spareband header (first line: ${JSON.stringify(shown)})` }
    }
    if (err instanceof ExportFormatError) {
      return { ok: false, index: err.index, ...(err.sessionId != null ? { sessionId: String(err.sessionId) } : {}), reason: err.message }
    }
    return { ok: false, index: 0, reason: err?.message ?? String(err) }
  }
}

/** Throws the first bad signature still being checked. */
async function settled (checker: EntryChecker): Promise<void> {
  const failure = await checker.settle()
  if (failure != null) throw failure
}

/**
 * verifyExportStream() of a whole text, also returning the verified
 * receipts (fine for a text already in memory; a file of any size goes
 * through verifyExportStream()).
 */
export async function verifyExport (text: string): Promise<VerifyExportResult> {
  const result = await verifyExportStream([text], { keepReceipts: true })
  return result as VerifyExportResult
}
