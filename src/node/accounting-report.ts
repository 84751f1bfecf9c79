/**
 * The answers of the `balance` and `receipts` API routes, built from a
 * ledger: by the running node, and by the CLI from ledger.db when no node
 * runs (offline-ledger.ts), so both print the same. Kept apart from
 * accounting-part.ts, which wires libp2p, so the CLI can load it cheaply.
 */

import { setImmediate as nextTurn } from 'node:timers/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { ExportWriter } from '../accounting/export.ts'
import { formatCredits } from '../accounting/credits.ts'
import { ed25519PeerFromBytes } from '../accounting/receipts.ts'
import { HttpError } from './control-api.ts'
import { day } from '../constants.ts'
import type { ExportFormat } from '../accounting/export.ts'
import type { Balance, Ledger, LedgerInit, StoredReceipt } from '../accounting/ledger.ts'
import type { SparebandConfig } from './config.ts'
import type { PeerId } from '@libp2p/interface'

/** The ledger's file in the data directory (defined beside the data directory's other rules, which identity.ts needs without the rest of this file). */
export { LEDGER_FILE } from './data-dir.ts'

/** Credits as configured (a number) to micro-credits, as the ledger counts them. */
export const creditsToMicro = (credits: number): bigint => BigInt(Math.round(credits * 1e6))

/** The ledger settings that come from `[accounting]`: the node and the CLI open ledger.db with the same ones. */
export function ledgerSettings (a: SparebandConfig['accounting']): Pick<LedgerInit, 'allowanceMicro' | 'powDifficulty' | 'gossipRetentionMs'> {
  return { allowanceMicro: creditsToMicro(a.allowance), powDifficulty: a.pow_difficulty, gossipRetentionMs: a.gossip_retention_days * day }
}

/**
 * What only a running node knows: bytes carried (as an exit) or used (as a
 * consumer) that no receipt covers yet, and consumers held for them.
 */
export interface PendingBytes {
  carriedUnsignedBytes: number
  usedUnsignedBytes: number
  holds: number
  /** As an exit: bytes let off consumers for tunnels cut mid-transfer (lost on the way, so never signed). */
  forgivenBytes: number
  /** As an exit: receipts (and hellos) refused for coming faster than their consumer's budget allows. */
  receiptsRefused: number
}

export interface BalanceReportInit {
  /** `accounting.pow_difficulty`: what the proof of work is shown against when there is none. */
  powDifficulty: number
  /** This node's proof of work, if it has one. */
  pow: { difficulty: number } | undefined
  /** null when no node runs: unknown, not zero. */
  pending: PendingBytes | null
  /**
   * For `outOfCredit`, once the balance counts the allowance (a proof of
   * work at the configured difficulty): whether the node runs an exit
   * (exit.enabled), and accounting.stop_at_balance in micro-credits.
   */
  credit?: { supplies: boolean, stopAtMicro: bigint }
}

/** `GET /v1/balance` (and `spareband balance`): this node's position in its ledger. */
/**
 * A node's credit position, as `spareband balance` and the API show it:
 * credits as decimal strings with up to six decimals (`"0.25"`), byte
 * totals as decimal strings (they may pass 2^53), so it survives JSON.
 */
export interface BalanceReport {
  /** What consumers paid this node as an exit. */
  earned: string
  /** Carried for consumers whose balance could not pay for it: owed, not credited. */
  unpaid: string
  spent: string
  allowance: string
  /** allowance + earned - spent; may be negative. */
  balance: string
  bytesCarried: string
  bytesUsed: string
  /** What only a running node knows (null when read offline from ledger.db). */
  pending: PendingBytes | null
  proofOfWork: { solved: boolean, difficulty: number }
  /** Receipts in the ledger, own and gossiped. */
  receipts: number
  /** Why this node opens no tunnel, or exits refuse it, and what it can do (creditWarning); null while it has credit or no proof of work yet. */
  outOfCredit: string | null
}

export function balanceReport (ledger: Ledger, init: BalanceReportInit): BalanceReport {
  const b = ledger.balance()
  return {
    earned: formatCredits(b.earnedMicro),
    // carried for consumers whose balance could not pay for it: not credited
    unpaid: formatCredits(b.unpaidMicro),
    spent: formatCredits(b.spentMicro),
    allowance: formatCredits(b.allowanceMicro),
    balance: formatCredits(b.balanceMicro),
    // decimal strings: status() must survive JSON.stringify in embedding apps
    bytesCarried: b.bytesCarried.toString(),
    bytesUsed: b.bytesUsed.toString(),
    pending: init.pending,
    proofOfWork: init.pow == null ? { solved: false, difficulty: init.powDifficulty } : { solved: true, difficulty: init.pow.difficulty },
    receipts: ledger.size,
    outOfCredit: init.credit == null ? null : creditWarning(b, init.credit.supplies, init.credit.stopAtMicro) ?? null
  }
}

/**
 * The consumer's warning when its balance, as its own ledger has it, is
 * used up: the node then opens no tunnel and has ended its open ones, as
 * long as its balance is not above `stopAtMicro` (accounting.stop_at_balance),
 * and exits (whose credit limit is 0 unless their operators chose
 * otherwise) refuse it too, once they have heard of its spending. Its
 * clients see only 402s and resets.
 */
export function creditWarning (b: Balance, supplies: boolean, stopAtMicro = 0n): string | undefined {
  if (b.balanceMicro > 0n && b.balanceMicro > stopAtMicro) return undefined
  const earn = earnAdvice(supplies)
  // a stop above 0 is the node's own: exits, at their default credit limit of 0, still carry a positive balance
  const exits = b.balanceMicro > 0n ? 'exits would still carry it (at their default credit limit of 0): the stop is its own' : 'exits refuse it too'
  const stopped = b.balanceMicro > stopAtMicro
    ? `exits at the default credit limit (0) refuse this node's new tunnels (HTTP 402, SOCKS5 0x02) and close the open ones once what they carried is used up; exits whose operators set a lower accounting.credit_limit carry it down to that (accounting.stop_at_balance ${formatCredits(stopAtMicro)} lets this node go on until then)`
    : `this node opens no tunnel (HTTP 402, SOCKS5 0x02) and ends its open ones while its balance is not above accounting.stop_at_balance (${formatCredits(stopAtMicro)}), and ${exits}`
  return `out of credit: balance ${formatCredits(b.balanceMicro)} (allowance ${formatCredits(b.allowanceMicro)} + earned ${formatCredits(b.earnedMicro)} - spent ${formatCredits(b.spentMicro)}); ${stopped}; ${earn}`
}

/** How a node out of credit earns more: as an exit, if it runs one. */
export function earnAdvice (supplies: boolean): string {
  return supplies
    ? 'it earns credit as an exit when others route traffic through it'
    : 'it earns credit only as an exit, which --no-supply (exit.enabled = false) turns off'
}

/**
 * How many receipts a listing shows when no limit is given: a table of a
 * thousand rows is already more than a terminal holds. An export has no
 * default limit: it is the record, and a capped one would silently drop
 * receipts.
 */
export const DEFAULT_RECEIPT_LIST_LIMIT = 1000

/**
 * A receipt limit as typed by a user or sent to the API: a positive integer
 * in plain decimal digits. Throws RangeError naming the value otherwise (so
 * `1.5`, `1e30`, `0`, `-3` and `abc` are refused, not rounded or replaced by
 * a default).
 */
export function parseReceiptLimit (text: string): number {
  const digits = /^[0-9]+$/.test(text)
  const n = Number(text)
  if (!digits || n < 1) throw new RangeError(`"${text}" is not a positive integer`)
  if (!Number.isSafeInteger(n)) throw new RangeError(`"${text}" is not a positive integer up to ${Number.MAX_SAFE_INTEGER}`)
  return n
}

/**
 * A countersigned receipt as `spareband receipts --json`, `GET
 * /v1/receipts` and `node.receipts()` list it: peers as peer ids, credits
 * as decimal strings, byte counts and seq as decimal strings (they may
 * pass 2^53), times in ms since the epoch.
 */
export interface ReceiptRow {
  /** The session's key (consumer, exit, session id). */
  id: string
  sessionId: string
  consumer: string
  exit: string
  bytesUp: string
  bytesDown: string
  seq: string
  startedAt: number
  updatedAt: number
  pricePerGb: string
  cost: string
  /** 'own': this node was the consumer or the exit; 'gossip': heard from the network. */
  source: StoredReceipt['source']
  receivedAt: number
}

export function receiptRow (s: StoredReceipt): ReceiptRow {
  const r = s.receipt
  return {
    id: s.id,
    sessionId: r.sessionId,
    consumer: ed25519PeerFromBytes(r.consumer, 'consumer').toString(),
    exit: ed25519PeerFromBytes(r.exit, 'exit').toString(),
    bytesUp: r.bytesUp.toString(),
    bytesDown: r.bytesDown.toString(),
    seq: r.seq.toString(),
    startedAt: Number(r.startedAt),
    updatedAt: Number(r.updatedAt),
    pricePerGb: formatCredits(r.pricePerGb),
    cost: formatCredits(s.costMicro),
    source: s.source,
    receivedAt: s.receivedAt
  }
}

/** `GET /v1/receipts` parameters, as strings from the query. */
export interface ReceiptsQuery {
  /** At most this many, newest first; default DEFAULT_RECEIPT_LIST_LIMIT for a listing, all for an export. */
  limit?: string | null
  /** Only sessions of this peer. */
  peer?: string | null
  /** csv or json: an export instead of a listing. */
  export?: string | null
}

/**
 * How many receipts an export reads from the ledger and writes before it
 * lets the node's other work (tunnels, receipts) run: about 10 ms of work.
 */
export const EXPORT_BATCH = 256

/** An export as it is written: its text comes a batch of receipts at a time. */
export interface ReceiptsExport {
  format: ExportFormat
  chunks: AsyncIterable<string>
}

/**
 * The listing (rows) or the export a query asks for. Throws HttpError 400
 * for a bad limit, peer or format.
 *
 * An export reads the ledger a batch at a time, by row (8 bytes per session held), with a
 * turn of the event loop between batches: built at once, an export of
 * 50,000 receipts kept a running node from carrying any traffic for about
 * 2.5 s and held the document twice over in memory (see ExportWriter).
 * It holds the sessions as they were when it began, each with its newest
 * receipt when that batch is read (a newer receipt of a session replaces
 * the older one in the ledger; it is as valid).
 */
export function receiptsReport (ledger: Ledger, query: ReceiptsQuery): ReceiptRow[] | ReceiptsExport {
  const format = query.export ?? undefined
  if (format != null && format !== 'csv' && format !== 'json') throw new HttpError(400, `export format "${format}" is not csv or json`)
  let limit: number | undefined
  try {
    limit = query.limit == null ? (format == null ? DEFAULT_RECEIPT_LIST_LIMIT : undefined) : parseReceiptLimit(query.limit)
  } catch (err: any) {
    throw new HttpError(400, `limit ${err.message}`)
  }
  let peer: PeerId | undefined
  try {
    peer = query.peer == null ? undefined : peerIdFromString(query.peer)
  } catch {
    throw new HttpError(400, `"${query.peer}" is not a peer id`)
  }
  if (format == null) return ledger.receipts({ peer, limit }).map(receiptRow)
  return { format, chunks: exportChunks(ledger, ledger.receiptRowids({ peer, limit }), format) }
}

async function * exportChunks (ledger: Ledger, rowids: Float64Array, format: ExportFormat): AsyncGenerator<string> {
  const writer = new ExportWriter(format)
  let text = writer.start()
  for (let i = 0; i < rowids.length; i++) {
    // a third party's session pruned since the snapshot is left out: the
    // export's totals count what it holds, so it still verifies
    const stored = ledger.getByRowid(rowids[i])
    if (stored != null) text += writer.add(stored.receipt)
    if ((i + 1) % EXPORT_BATCH === 0) {
      yield text
      text = ''
      await nextTurn()
    }
  }
  yield text + writer.end()
}

/**
 * The API's answer to an export, `{ "format": ..., "text": ... }` as the
 * control API writes any JSON answer, but written as the export is.
 */
export async function * exportAsJson (e: ReceiptsExport): AsyncGenerator<string> {
  yield `{\n  "format": ${JSON.stringify(e.format)},\n  "text": "`
  // chunks end between receipts, never inside a character: each escapes alone as within the whole
  for await (const chunk of e.chunks) yield JSON.stringify(chunk).slice(1, -1)
  yield '"\n}\n'
}

/** What comes before an export's text in the API's answer (see exportAsJson). */
const EXPORT_ANSWER_HEAD = /^\{\s*"format"\s*:\s*"(csv|json)"\s*,\s*"text"\s*:\s*"/
/** More than the head ever takes: an answer whose head is not in this many characters is not an export. */
const EXPORT_ANSWER_HEAD_MAX = 256

/** Thrown for an answer that is not what exportAsJson() writes, or is cut short. */
export class ExportAnswerError extends Error {
  static name = 'ExportAnswerError'
  constructor (message: string) {
    super(message)
    this.name = 'ExportAnswerError'
  }
}

/**
 * The export's text out of the API's answer (exportAsJson()), a piece at a
 * time as the answer's bytes arrive, so the CLI writes a large export
 * without holding it. Each piece ends between JSON escapes (a chunk of
 * bytes may end anywhere: inside a character, inside `\u00e9`), so each is
 * decoded by JSON.parse alone. Throws ExportAnswerError when the answer
 * ends before the text's closing quote or the object's brace: the text
 * handed out so far is then only a part, which the export's totals make
 * fail `spareband verify`.
 */
export async function * exportTextOfAnswer (answer: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true })
  let state = 'head' as 'head' | 'text' | 'tail'
  let pending = ''
  const take = function * (text: string): Generator<string> {
    pending += text
    if (state === 'head') {
      const head = EXPORT_ANSWER_HEAD.exec(pending)
      if (head == null) {
        if (pending.length > EXPORT_ANSWER_HEAD_MAX) throw new ExportAnswerError('the node\'s answer is not an export')
        return
      }
      pending = pending.slice(head[0].length)
      state = 'text'
    }
    if (state === 'text') {
      const { end, safe } = stringEnd(pending)
      const piece = pending.slice(0, end ?? safe)
      if (piece !== '') {
        try {
          yield JSON.parse(`"${piece}"`) as string
        } catch (err: any) {
          throw new ExportAnswerError(`the node's answer is not a well-formed export (${err.message})`)
        }
      }
      if (end == null) {
        pending = pending.slice(safe)
        return
      }
      pending = pending.slice(end + 1)
      state = 'tail'
    }
    if (!/^\s*(\}\s*)?$/.test(pending)) throw new ExportAnswerError('the node\'s answer goes on after the export')
  }
  for await (const chunk of answer) yield * take(decoder.decode(chunk, { stream: true }))
  yield * take(decoder.decode())
  if (state !== 'tail' || !/^\s*\}\s*$/.test(pending)) throw new ExportAnswerError('the node\'s answer ended before the export did')
}

/**
 * In the body of a JSON string: where its closing quote is (`end`), or
 * else how much of it is whole escapes and characters (`safe`).
 */
function stringEnd (s: string): { end?: number, safe: number } {
  let i = 0
  while (true) {
    const q = s.indexOf('"', i)
    const b = s.indexOf('\\', i)
    if (b !== -1 && (q === -1 || b < q)) {
      const length = s[b + 1] === 'u' ? 6 : 2
      if (b + length > s.length) return { safe: b }
      i = b + length
      continue
    }
    return q === -1 ? { safe: s.length } : { end: q, safe: q }
  }
}
