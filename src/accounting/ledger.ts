/**
 * The ledger: the newest countersigned receipt of every session this node
 * took part in or heard of over gossip, the identity proofs of work, and the
 * balances derived from them, in one `node:sqlite` file (`ledger.db` in the
 * data directory).
 *
 * Durability: WAL with `synchronous=NORMAL` and one committed transaction per
 * recordReceipt() call, so a receipt whose call returned survives a process
 * kill (a power cut may lose the last few, which the peer still holds).
 *
 * Safety: the file is never reset. A file that is not SQLite, is damaged, or
 * belongs to another application or identity raises a LedgerError naming
 * the file and what to do, before anything is written to it.
 *
 * Retention: third parties' sessions, heard of over gossip, are deleted
 * some time after their last receipt (pruneGossip), so the file does not
 * grow with every session the network ever had; this node's own sessions
 * and every balance are kept. The file gives the space back: it is
 * `auto_vacuum = INCREMENTAL` (set before its first table), and once a
 * pruning pass leaves no full batch behind, the same timer hands free
 * pages beyond 1 MiB back to the file system, 128 a pass (vacuumStep). A
 * file made before that (auto_vacuum NONE) is converted by one VACUUM when
 * a writable open finds that pruning left at least 4 MiB and a quarter of
 * it free, and the disk has room for the rewrite; if the VACUUM fails the
 * file stays as it was and the ledger goes on (see ledger-vacuum.ts).
 * Read-only opens never do either. Both are SQLite transactions: the
 * durability above holds through them.
 */

import { accessSync, constants, existsSync, mkdirSync, openSync, readSync, closeSync, statSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { dirname } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { minute } from '../constants.ts'
import { fsErrorWords } from '../errors.ts'
import { DEFAULT_ALLOWANCE_MICRO, DEFAULT_GOSSIP_RETENTION_MS, DEFAULT_POW_DIFFICULTY } from './constants.ts'
import { costMicro, verifyPow } from './credits.ts'
import { LedgerError, LedgerErrorCode, ReceiptError, ReceiptErrorCode } from './errors.ts'
import { checkProgress, checkReceiptFields, checkReceiptSignatures, decodeReceipt, encodeReceipt, madeHere, receiptId, verifyReceipt } from './receipts.ts'
import { WalCheckpointer } from './wal-checkpointer.ts'
import { AUTO_VACUUM_INCREMENTAL, VACUUM_SLACK_BYTES, VACUUM_STEP_PAGES, compactAtOpen, makeIncremental, pragma } from './ledger-vacuum.ts'
import { PendingJournal } from './pending-journal.ts'
import type { CountersignedReceipt, Receipt } from './receipts.ts'
import type { LedgerCompaction } from './ledger-vacuum.ts'
import type { AbortOptions, PeerId } from '@libp2p/interface'
import type { StatementSync } from 'node:sqlite'

/** Written into `meta` so we can tell our file from another app's SQLite database. */
export const LEDGER_APP = 'spareband-ledger'

/** 'own': this node is the consumer or the exit; 'gossip': heard from the network. */
export type ReceiptSource = 'own' | 'gossip'

export type RecordResult = 'inserted' | 'updated' | 'duplicate'

export interface LedgerInit {
  /** This node: `own` receipts must involve it, the file is bound to it, and balance() defaults to it. */
  selfPeerId?: PeerId
  /**
   * Starting credit of every peer with a recorded proof of work.
   *
   * @default DEFAULT_ALLOWANCE_MICRO
   */
  allowanceMicro?: bigint
  /**
   * Bits a proof of work needs to earn the allowance.
   *
   * @default DEFAULT_POW_DIFFICULTY
   */
  powDifficulty?: number
  /** Injectable clock (ms) for `received_at`. */
  now?: () => number
  /**
   * The longest a receipt queued with recordLater() waits for its batch.
   *
   * @default 100
   */
  deferMs?: number
  /**
   * Open an existing, current ledger for reading only (the CLI, when no node
   * runs): nothing is created, migrated or bound to `selfPeerId` (a file
   * bound to another identity is still refused), and writes fail. SQLite
   * may leave the (empty) `-wal` and `-shm` files it reads through.
   *
   * @default false
   */
  readOnly?: boolean
  /**
   * How long a third party's session (a 'gossip' row that does not involve
   * this node) is kept after its last receipt reached us; 0 keeps them all
   * for ever. A writable ledger prunes in small batches on a timer (see
   * pruneGossip).
   *
   * @default DEFAULT_GOSSIP_RETENTION_MS
   */
  gossipRetentionMs?: number
}

export interface StoredReceipt {
  /** receiptId(): the session key. */
  id: string
  receipt: CountersignedReceipt
  source: ReceiptSource
  /** When this version of the receipt reached us (ms). */
  receivedAt: number
  costMicro: bigint
}

export interface Balance {
  /**
   * What the peer's consumers paid it as an exit: the cost of each receipt's
   * new bytes, up to what the consumer's balance held when the receipt
   * arrived (see Ledger.apply), and what they paid later of what they
   * owed. Without that cap two keys of one owner could sign each other
   * receipts for any amount and mint credit.
   */
  earnedMicro: bigint
  /**
   * The cost of bytes the peer carried as an exit that its consumers'
   * balances could not pay: not credited, but owed, and paid (moved to
   * earned) as those consumers' balances grow (Ledger.settle).
   */
  unpaidMicro: bigint
  /** Sum of costs of sessions where the peer was the consumer (paid for or not). */
  spentMicro: bigint
  /** The starting allowance, if the peer has a valid proof of work. */
  allowanceMicro: bigint
  /** allowance + earned - spent; may be negative. */
  balanceMicro: bigint
  bytesCarried: bigint
  bytesUsed: bigint
}

export interface ProofOfWork {
  nonce: bigint
  /** Leading zero bits the nonce proves. */
  difficulty: number
}

export interface ReceiptQuery {
  /** Only sessions where this peer is consumer or exit. */
  peer?: PeerId | Uint8Array
  /** Newest first; all when unset. */
  limit?: number
}

const SQLITE_HEADER = 'SQLite format 3\0'
// SQLite primary result codes, https://www.sqlite.org/rescode.html
const SQLITE_CORRUPT = 11
const SQLITE_FULL = 13
const SQLITE_CANTOPEN = 14
const SQLITE_NOTADB = 26

/**
 * Schema versions, kept in `PRAGMA user_version`. Entry i upgrades version i
 * to i + 1; never edit a shipped entry, append a new one.
 */
const MIGRATIONS: Array<(db: DatabaseSync) => void> = [
  (db) => db.exec(`
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
    INSERT INTO meta (key, value) VALUES ('app', '${LEDGER_APP}');
    -- the newest countersigned receipt per session key; integers fit int64
    -- because receipts.ts refuses larger values
    CREATE TABLE receipts (
      id TEXT PRIMARY KEY,
      session_id TEXT NOT NULL,
      consumer BLOB NOT NULL,
      exit BLOB NOT NULL,
      bytes_up INTEGER NOT NULL,
      bytes_down INTEGER NOT NULL,
      seq INTEGER NOT NULL,
      started_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      price_per_gb INTEGER NOT NULL,
      consumer_sig BLOB NOT NULL,
      exit_sig BLOB NOT NULL,
      -- a bigint as decimal text: bytes x price can exceed int64
      cost_micro TEXT NOT NULL,
      encoded BLOB NOT NULL,
      source TEXT NOT NULL CHECK (source IN ('own', 'gossip')),
      received_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX receipts_consumer ON receipts (consumer);
    CREATE INDEX receipts_exit ON receipts (exit);
    CREATE INDEX receipts_updated_at ON receipts (updated_at);
    -- nonce is a uint64, stored as decimal text for the same reason
    CREATE TABLE pow (
      peer BLOB PRIMARY KEY,
      nonce TEXT NOT NULL,
      difficulty INTEGER NOT NULL,
      recorded_at INTEGER NOT NULL
    ) STRICT;
    -- running sums per peer, updated in the same transaction as receipts so
    -- balance() does not scan every session of a busy peer
    CREATE TABLE totals (
      peer BLOB PRIMARY KEY,
      earned_micro TEXT NOT NULL,
      spent_micro TEXT NOT NULL,
      bytes_carried TEXT NOT NULL,
      bytes_used TEXT NOT NULL
    ) STRICT;
  `),
  // listings go newest first by when this node got a receipt: updated_at is
  // whatever the signers wrote, so a far-future one pinned gossip to the top
  (db) => db.exec(`
    DROP INDEX receipts_updated_at;
    CREATE INDEX receipts_received_at ON receipts (received_at);
  `),
  // an exit is credited only what its consumer's balance could pay (sybil
  // rings): what it carried beyond that is kept apart. Totals written before
  // this version were credited in full and stay so.
  (db) => db.exec(`
    ALTER TABLE totals ADD COLUMN unpaid_micro TEXT NOT NULL DEFAULT '0';
  `),
  // what each consumer owes each exit (the unpaid part of its receipts), so
  // the exits are paid, first come first served, when its balance grows
  (db) => db.exec(`
    CREATE TABLE debts (
      consumer BLOB NOT NULL,
      exit BLOB NOT NULL,
      amount_micro TEXT NOT NULL,
      PRIMARY KEY (consumer, exit)
    ) STRICT;
    -- the sum of a peer's rows in debts, kept with its other totals
    ALTER TABLE totals ADD COLUMN owed_micro TEXT NOT NULL DEFAULT '0';
  `),
  // a consumer's debts oldest first without sorting them all (an index on
  // consumer keeps its entries in rowid order)
  (db) => db.exec(`
    CREATE INDEX debts_consumer ON debts (consumer);
  `),
  // peers whose debts settle() could not pay within its step budget: paid
  // off one per receipt stored, so a creditor deep in a chain that goes
  // quiet is not left owing
  (db) => db.exec(`
    CREATE TABLE unsettled (peer BLOB PRIMARY KEY) STRICT;
  `),
  // third parties' sessions oldest first, for pruning (pruneGossip): own
  // rows, which are never pruned, are left out, so a node with a long
  // history of its own does not walk through it at every pass
  (db) => db.exec(`
    CREATE INDEX receipts_gossip_received_at ON receipts (received_at) WHERE source = 'gossip';
  `),
  // the reputation reports held (reputation-book.ts), so a restart does not
  // forget what the network said of exits for up to a day: one row per exit
  // and reporter, the newest report
  (db) => db.exec(`
    CREATE TABLE reputation (
      subject BLOB NOT NULL,
      reporter BLOB NOT NULL,
      issued_at INTEGER NOT NULL,
      successes INTEGER NOT NULL,
      failures INTEGER NOT NULL,
      PRIMARY KEY (subject, reporter)
    ) STRICT;
  `)
]

export const LEDGER_SCHEMA_VERSION = MIGRATIONS.length

/**
 * `meta` key: the latest start (ms, plus one) of a session pruneGossip()
 * deleted. Gossip of a third party's session we do not hold that started
 * before it may be one we deleted, and is refused (see pruneGossip).
 */
const PRUNED_BEFORE = 'gossip_pruned_before'

interface Statements {
  getReceipt: StatementSync
  insertReceipt: StatementSync
  updateReceipt: StatementSync
  listAll: StatementSync
  listByPeer: StatementSync
  listRowids: StatementSync
  listRowidsByPeer: StatementSync
  getByRowid: StatementSync
  count: StatementSync
  getTotals: StatementSync
  putTotals: StatementSync
  dataVersion: StatementSync
  getPow: StatementSync
  debtsOf: StatementSync
  getDebt: StatementSync
  putDebt: StatementSync
  dropDebt: StatementSync
  countUnsettled: StatementSync
  firstUnsettled: StatementSync
  markUnsettled: StatementSync
  clearUnsettled: StatementSync
  putPow: StatementSync
  pruneGossip: StatementSync
  getPrunedBefore: StatementSync
  putPrunedBefore: StatementSync
  costsBetween: StatementSync
  putReport: StatementSync
  dropReport: StatementSync
  dropReportsBefore: StatementSync
  listReports: StatementSync
  freePages: StatementSync
}

/** A reputation report as the ledger keeps it: who said what of which exit, and when. */
export interface StoredReport {
  subject: Uint8Array
  reporter: Uint8Array
  /** ms since the epoch */
  issuedAt: number
  successes: number
  failures: number
}

/** Changes to a peer's totals; what is left out stays as it is. */
interface TotalsDelta { earned?: bigint, spent?: bigint, carried?: bigint, used?: bigint, unpaid?: bigint, owed?: bigint }

function peerBytes (peer: PeerId | Uint8Array): Uint8Array {
  return peer instanceof Uint8Array ? peer : peer.toMultihash().bytes
}

function whatToDo (file: string): string {
  return `spareband never resets a ledger: move ${file} aside (or restore it from a backup) and start again, or choose another --data-dir`
}

/** Refuses a non-empty file that lacks the SQLite header, before SQLite touches it. */
function checkHeader (file: string): void {
  const header = Buffer.alloc(SQLITE_HEADER.length)
  try {
    if (!existsSync(file) || statSync(file).size === 0) return
    const fd = openSync(file, 'r')
    try {
      readSync(fd, header, 0, header.length, 0)
    } finally {
      closeSync(fd)
    }
  } catch (err: any) {
    throw new LedgerError(LedgerErrorCode.IO, `cannot read ledger ${file}: ${err.message}`, file, { cause: err })
  }
  if (header.toString('latin1') !== SQLITE_HEADER) {
    throw new LedgerError(LedgerErrorCode.NOT_SQLITE, `${file} is not an SQLite database, so not a spareband ledger. ${whatToDo(file)}`, file)
  }
}

/**
 * Throws for an existing ledger file this process may not write. SQLite
 * opens such a file read-only without a word, and the connection stays so
 * after the file is fixed: a node started on one refused every receipt
 * (and so every tunnel, as an exit) until it was restarted.
 */
function checkWritable (file: string): void {
  try {
    accessSync(file, constants.W_OK)
  } catch (err: any) {
    if (err?.code === 'ENOENT') return
    const how = err?.code === 'EPERM' ? 'chattr -i: it is marked immutable' : err?.code === 'EROFS' ? 'mount its file system read-write' : 'chmod u+w, or run as its owner'
    throw new LedgerError(LedgerErrorCode.IO, `ledger ${file} cannot be written (${fsErrorWords(err) ?? err?.code ?? err?.message}), so no receipt could be stored; make it writable (${how}) and start again`, file, { cause: err })
  }
}

function sqliteFailure (file: string, err: any, doing: string): LedgerError {
  const code = err?.errcode & 0xff
  if (code === SQLITE_NOTADB) {
    return new LedgerError(LedgerErrorCode.NOT_SQLITE, `${file} is not an SQLite database, so not a spareband ledger (${err.message}). ${whatToDo(file)}`, file, { cause: err })
  }
  if (code === SQLITE_CORRUPT) {
    return new LedgerError(LedgerErrorCode.CORRUPT, `ledger ${file} is corrupt (${err.message}). ${whatToDo(file)}`, file, { cause: err })
  }
  if (code === SQLITE_FULL) {
    return new LedgerError(LedgerErrorCode.IO, `cannot ${doing} ledger ${file}: the disk is full (${err.message}); free some space on it`, file, { cause: err })
  }
  return new LedgerError(LedgerErrorCode.IO, `cannot ${doing} ledger ${file}: ${err?.message ?? err}`, file, { cause: err })
}

/**
 * Ends a failed transaction. A COMMIT that failed (disk full) has rolled
 * back already, and a second ROLLBACK throws "no transaction is active":
 * that error must not replace the one that says why. (Not
 * `db.isTransaction`: Node has it only from 22.16, and we support 22.13.)
 */
function rollBack (db: DatabaseSync): void {
  try {
    db.exec('ROLLBACK')
  } catch {}
}

/**
 * `db` (opened read-only), or, where SQLite cannot make the -shm file a WAL
 * database is read with (a read-only file system), the same file opened
 * immutable: with no WAL left to read (its node closed cleanly), the file
 * alone is the whole ledger. SQLite opens lazily, so the first read tells.
 */
function readableOnReadOnlyDisk (db: DatabaseSync, file: string): DatabaseSync {
  try {
    db.prepare('SELECT count(*) FROM sqlite_schema').get()
    return db
  } catch (err: any) {
    if ((err?.errcode & 0xff) !== SQLITE_CANTOPEN || existsSync(`${file}-wal`)) return db // the checks that follow say what is wrong
    db.close()
    try {
      return new DatabaseSync(new URL(`${pathToFileURL(file).href}?immutable=1`), { readOnly: true })
    } catch {
      throw sqliteFailure(file, err, 'open')
    }
  }
}

function quickCheck (db: DatabaseSync, file: string): void {
  let rows: Array<Record<string, unknown>>
  try {
    rows = db.prepare('PRAGMA quick_check').all()
  } catch (err) {
    throw sqliteFailure(file, err, 'check')
  }
  const result = rows.map(row => String(Object.values(row)[0])).join('\n')
  if (result !== 'ok') {
    const first = result.split('\n').slice(0, 3).join('; ')
    throw new LedgerError(LedgerErrorCode.CORRUPT, `ledger ${file} is corrupt (quick_check: ${first}). ${whatToDo(file)}`, file)
  }
}

/** Decides whether the file is empty, ours (at some version), or someone else's. */
function identify (db: DatabaseSync, file: string): number {
  const version = Number((db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version)
  const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all().map(row => row.name)
  if (version === 0 && tables.length === 0) return 0
  const app = tables.includes('meta')
    ? (db.prepare("SELECT value FROM meta WHERE key = 'app'").get() as { value?: unknown } | undefined)?.value
    : undefined
  if (app !== LEDGER_APP) {
    throw new LedgerError(LedgerErrorCode.FOREIGN, `${file} is an SQLite database of another application, not a spareband ledger. ${whatToDo(file)}`, file)
  }
  if (version > LEDGER_SCHEMA_VERSION) {
    throw new LedgerError(LedgerErrorCode.TOO_NEW, `ledger ${file} has schema version ${version}, newer than this spareband understands (${LEDGER_SCHEMA_VERSION}): upgrade spareband`, file)
  }
  return version
}

function migrate (db: DatabaseSync, from: number): void {
  for (let version = from; version < LEDGER_SCHEMA_VERSION; version++) {
    db.exec('BEGIN IMMEDIATE')
    try {
      MIGRATIONS[version](db)
      db.exec(`PRAGMA user_version = ${version + 1}`)
      db.exec('COMMIT')
    } catch (err) {
      rollBack(db)
      throw err
    }
  }
}

function prepare (db: DatabaseSync): Statements {
  const columns = 'id, encoded, source, received_at, cost_micro'
  const s: Statements = {
    getReceipt: db.prepare(`SELECT ${columns} FROM receipts WHERE id = ?`),
    insertReceipt: db.prepare(`INSERT INTO receipts (id, session_id, consumer, exit, bytes_up, bytes_down, seq, started_at, updated_at,
      price_per_gb, consumer_sig, exit_sig, cost_micro, encoded, source, received_at)
      VALUES (:id, :session_id, :consumer, :exit, :bytes_up, :bytes_down, :seq, :started_at, :updated_at,
      :price_per_gb, :consumer_sig, :exit_sig, :cost_micro, :encoded, :source, :received_at)`),
    updateReceipt: db.prepare(`UPDATE receipts SET bytes_up = :bytes_up, bytes_down = :bytes_down, seq = :seq, updated_at = :updated_at,
      consumer_sig = :consumer_sig, exit_sig = :exit_sig, cost_micro = :cost_micro, encoded = :encoded, source = :source,
      received_at = :received_at WHERE id = :id`),
    listAll: db.prepare(`SELECT ${columns} FROM receipts ORDER BY received_at DESC, rowid DESC LIMIT ?`),
    listByPeer: db.prepare(`SELECT ${columns} FROM receipts WHERE consumer = :peer OR exit = :peer ORDER BY received_at DESC, rowid DESC LIMIT :limit`),
    listRowids: db.prepare('SELECT rowid FROM receipts ORDER BY received_at DESC, rowid DESC LIMIT ?'),
    listRowidsByPeer: db.prepare('SELECT rowid FROM receipts WHERE consumer = :peer OR exit = :peer ORDER BY received_at DESC, rowid DESC LIMIT :limit'),
    getByRowid: db.prepare(`SELECT ${columns} FROM receipts WHERE rowid = ?`),
    count: db.prepare('SELECT count(*) AS n FROM receipts'),
    getTotals: db.prepare('SELECT earned_micro, spent_micro, bytes_carried, bytes_used, unpaid_micro, owed_micro FROM totals WHERE peer = ?'),
    putTotals: db.prepare(`INSERT INTO totals (peer, earned_micro, spent_micro, bytes_carried, bytes_used, unpaid_micro, owed_micro) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (peer) DO UPDATE SET earned_micro = excluded.earned_micro, spent_micro = excluded.spent_micro,
      bytes_carried = excluded.bytes_carried, bytes_used = excluded.bytes_used, unpaid_micro = excluded.unpaid_micro, owed_micro = excluded.owed_micro`),
    dataVersion: db.prepare('PRAGMA data_version'),
    getPow: db.prepare('SELECT nonce, difficulty FROM pow WHERE peer = ?'),
    // oldest debt first: the row keeps its rowid when its amount changes
    debtsOf: db.prepare('SELECT exit, amount_micro FROM debts WHERE consumer = ? ORDER BY rowid LIMIT ?'),
    getDebt: db.prepare('SELECT amount_micro FROM debts WHERE consumer = ? AND exit = ?'),
    putDebt: db.prepare(`INSERT INTO debts (consumer, exit, amount_micro) VALUES (?, ?, ?)
      ON CONFLICT (consumer, exit) DO UPDATE SET amount_micro = excluded.amount_micro`),
    dropDebt: db.prepare('DELETE FROM debts WHERE consumer = ? AND exit = ?'),
    countUnsettled: db.prepare('SELECT count(*) AS n FROM unsettled'),
    firstUnsettled: db.prepare('SELECT peer FROM unsettled LIMIT 1'),
    markUnsettled: db.prepare('INSERT OR IGNORE INTO unsettled (peer) VALUES (?)'),
    clearUnsettled: db.prepare('DELETE FROM unsettled WHERE peer = ?'),
    putPow: db.prepare(`INSERT INTO pow (peer, nonce, difficulty, recorded_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (peer) DO UPDATE SET nonce = excluded.nonce, difficulty = excluded.difficulty, recorded_at = excluded.recorded_at
      WHERE excluded.difficulty > pow.difficulty`),
    // 'gossip' spelled out, not bound: only then can SQLite use the partial index.
    // DELETE ... LIMIT needs a compile option, hence the subquery
    pruneGossip: db.prepare(`DELETE FROM receipts WHERE rowid IN (SELECT rowid FROM receipts
      WHERE source = 'gossip' AND received_at < :horizon AND started_at < :horizon AND consumer != :self AND exit != :self
      ORDER BY received_at LIMIT :limit) RETURNING id, started_at`),
    getPrunedBefore: db.prepare(`SELECT value FROM meta WHERE key = '${PRUNED_BEFORE}'`),
    putPrunedBefore: db.prepare(`INSERT INTO meta (key, value) VALUES ('${PRUNED_BEFORE}', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`),
    // through the consumer's index: a consumer has few exits' sessions next to each other
    costsBetween: db.prepare('SELECT cost_micro FROM receipts WHERE consumer = ? AND exit = ?'),
    putReport: db.prepare(`INSERT INTO reputation (subject, reporter, issued_at, successes, failures) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (subject, reporter) DO UPDATE SET issued_at = excluded.issued_at, successes = excluded.successes, failures = excluded.failures`),
    dropReport: db.prepare('DELETE FROM reputation WHERE subject = ? AND reporter = ?'),
    dropReportsBefore: db.prepare('DELETE FROM reputation WHERE issued_at < ?'),
    listReports: db.prepare('SELECT subject, reporter, issued_at, successes, failures FROM reputation WHERE issued_at >= ? ORDER BY issued_at'),
    freePages: db.prepare('PRAGMA freelist_count')
  }
  s.getReceipt.setReadBigInts(true)
  s.listAll.setReadBigInts(true)
  s.listByPeer.setReadBigInts(true)
  s.pruneGossip.setReadBigInts(true)
  return s
}

/** A stored row as a receipt; a row that no longer decodes is named, with the file, as corruption. */
function rowToStored (row: Record<string, any>, file: string): StoredReceipt {
  let receipt: CountersignedReceipt
  try {
    receipt = decodeReceipt(row.encoded) as CountersignedReceipt
  } catch (err: any) {
    throw new LedgerError(LedgerErrorCode.CORRUPT, `ledger ${file} is damaged: the receipt of row ${row.id} does not decode (${err.message}). ${whatToDo(file)}`, file)
  }
  return {
    id: row.id,
    receipt,
    source: row.source,
    receivedAt: Number(row.received_at),
    costMicro: BigInt(row.cost_micro)
  }
}

const clamp = (x: bigint, min: bigint, max: bigint): bigint => x < min ? min : x > max ? max : x

const hexOf = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')

/** Sessions whose last receipt stays decoded in memory: about what one node has open at once. */
const RECENT_RECEIPTS = 1024

/** Whether both signatures of `r` (and its fields) check out; anything but a ReceiptError is not an answer and is thrown. */
function signaturesHold (r: CountersignedReceipt): boolean {
  try {
    checkReceiptSignatures(r)
    return true
  } catch (err) {
    if (err instanceof ReceiptError) return false
    throw err
  }
}

/** Payments of debts one event may set off (settle()). */
const SETTLE_STEPS = 64

/**
 * Rows one pruning transaction deletes. A row's id and peers sit far apart
 * in their indexes, so each deleted row writes pages of its own: about
 * 50 µs a row on a 100,000-row file, 2 ms a batch (median; 4.6 ms p90 on a
 * busy machine), against 0.07 ms for a receipt's commit. The exit commits
 * a receipt per MiB it carries and waits for the lock (and the event loop)
 * meanwhile, so batches stay this small.
 */
const PRUNE_BATCH = 32
/**
 * Between batches while old rows remain: about 1,000 rows a second at 7 %
 * of the event loop, so a backlog (a first start after an upgrade) clears
 * and pruning keeps up with gossip at the rate a ledger can take it in.
 */
const PRUNE_BUSY_MS = 25
/** Once none are left: retention is counted in days, a minute late is nothing. */
const PRUNE_IDLE_MS = minute

/** Matches no peer id: what pruning leaves out when the ledger has no selfPeerId. */
const NO_PEER = new Uint8Array(0)

/** recordLater(): a batch is written at once when it grows to this. */
const MAX_DEFERRED = 256
const DEFAULT_DEFER_MS = 100

/** A receipt waiting in recordLater()'s queue. */
interface Deferred {
  id: string
  receipt: CountersignedReceipt
  encoded: Uint8Array
  resolve: (result: RecordResult) => void
  reject: (err: Error) => void
}

interface Totals { earned_micro: string, spent_micro: string, bytes_carried: string, bytes_used: string, unpaid_micro: string, owed_micro: string }

export class Ledger {
  readonly file: string
  private database: DatabaseSync | undefined
  private readonly prepared: Statements
  private readonly self?: Uint8Array
  private readonly allowanceMicro: bigint
  /** Bits a proof of work needs for the allowance. */
  readonly powDifficulty: number
  private readonly now: () => number
  /** Checkpoints the WAL off the event loop (files only). */
  private checkpointer?: WalCheckpointer
  /** recordLater()'s queue on disk until its batch is committed (files opened for writing). */
  private journal?: PendingJournal
  /**
   * The last receipt written per session, decoded: while a session is here
   * its row holds exactly this. Both caches are dropped when a transaction
   * rolls back, and when another connection has written to the file.
   */
  private readonly recent = new Map<string, StoredReceipt>()
  /** Each peer's row of `totals`, by peer bytes in hex, as last written or read. */
  private readonly totals = new Map<string, Totals | undefined>()
  /** Each peer's row of `pow`, the same way. */
  private readonly pows = new Map<string, ProofOfWork | undefined>()
  /** Rows in `unsettled`, when known: none, the common case, costs no query. */
  private unsettledRows?: number
  /** A batch whose commit failed, to go with the next one. */
  private retry: Deferred[] = []
  /** recordLater()'s queue, and the timer that writes it. */
  private deferred: Deferred[] = []
  private deferTimer?: NodeJS.Timeout
  private readonly deferMs: number
  /** `PRAGMA data_version` when the caches were last known good: another connection's commit changes it. */
  private dataVersion?: number
  /** 0: keep third parties' sessions for ever. */
  private readonly gossipRetentionMs: number
  /** The file's PRUNED_BEFORE, when known: null when nothing was ever pruned. Dropped with the caches. */
  private prunedBeforeCache?: bigint | null
  /** The next pruning batch (writable ledgers with a retention). */
  private pruneTimer?: NodeJS.Timeout
  /** Resolves once every connection close() ended is closed, the checkpointer's included. */
  private closed?: Promise<void>
  /** The file is `auto_vacuum = INCREMENTAL`: vacuumStep() can give its free pages back. */
  private readonly incremental: boolean
  /** Free pages vacuumStep() leaves for new rows. */
  private readonly slackPages: number
  /**
   * What this open did about an old file's (auto_vacuum NONE) large
   * freelist, when it had one: converted it, or why not (compactAtOpen).
   * Undefined when there was nothing to do, and for read-only opens.
   */
  readonly compaction?: LedgerCompaction
  /**
   * Set when the open found ledger.db.pending ending in bytes that are no
   * intact record (a write a kill cut short, or damage): those were
   * dropped, after the `records` before them were written.
   */
  pendingDropped?: { records: number, droppedBytes: number }

  /**
   * Opens (creating when absent) and migrates the ledger at `file`
   * (`':memory:'` for a throw-away one). Throws LedgerError for anything
   * that is not a healthy spareband ledger of this identity.
   */
  static open (file: string, init: LedgerInit = {}): Ledger {
    const memory = file === ':memory:'
    const readOnly = init.readOnly === true
    const retention = init.gossipRetentionMs
    if (retention != null && !(Number.isFinite(retention) && retention >= 0)) {
      throw new RangeError(`gossipRetentionMs must be 0 (keep for ever) or a positive number of ms, not ${retention}`)
    }
    if (!memory) {
      checkHeader(file)
      if (!readOnly) {
        mkdirSync(dirname(file), { recursive: true })
        checkWritable(file)
      }
    }
    let db: DatabaseSync
    try {
      db = new DatabaseSync(file, { readOnly })
    } catch (err) {
      throw sqliteFailure(file, err, 'open')
    }
    if (readOnly && !memory) db = readableOnReadOnlyDisk(db, file)
    try {
      // a second process (the CLI reading receipts) may hold the lock briefly;
      // a connection setting, nothing is written
      db.exec('PRAGMA busy_timeout = 5000')
      quickCheck(db, file)
      const version = identify(db, file)
      if (readOnly) {
        if (version < LEDGER_SCHEMA_VERSION) {
          const state = version === 0 ? 'is empty' : `has schema version ${version}, older than this spareband's (${LEDGER_SCHEMA_VERSION})`
          throw new LedgerError(LedgerErrorCode.READ_ONLY, `ledger ${file} ${state} and was opened read-only: start the node once to ${version === 0 ? 'set it up' : 'upgrade it'}`, file)
        }
      } else {
        // only now that the file is known to be ours (or empty) do we write to
        // it; a new file's auto_vacuum first, which its first page fixes
        if (version === 0) makeIncremental(db)
        if (!memory) db.exec('PRAGMA journal_mode = WAL')
        db.exec('PRAGMA synchronous = NORMAL')
        migrate(db, version)
      }
      // an old file that pruning left with many free pages: rewritten once,
      // so it shrinks now and after every prune from then on (never throws)
      const compaction = memory || readOnly || version === 0 ? undefined : compactAtOpen(db, file)
      const ledger = new Ledger(db, file, init, compaction)
      if (!memory && !readOnly) {
        ledger.replayPending()
        ledger.checkpointer = new WalCheckpointer(db, file)
      }
      // a backlog (a first start after an upgrade) goes at the busy pace until it is cleared
      if (!readOnly && ledger.gossipRetentionMs > 0) ledger.schedulePrune(PRUNE_BUSY_MS)
      return ledger
    } catch (err) {
      db.close()
      if (err instanceof LedgerError) throw err
      throw sqliteFailure(file, err, 'open')
    }
  }

  private constructor (db: DatabaseSync, file: string, init: LedgerInit, compaction?: LedgerCompaction) {
    this.database = db
    this.file = file
    this.compaction = compaction
    this.self = init.selfPeerId?.toMultihash().bytes
    this.allowanceMicro = init.allowanceMicro ?? DEFAULT_ALLOWANCE_MICRO
    this.powDifficulty = init.powDifficulty ?? DEFAULT_POW_DIFFICULTY
    this.now = init.now ?? Date.now
    this.deferMs = init.deferMs ?? DEFAULT_DEFER_MS
    this.gossipRetentionMs = init.gossipRetentionMs ?? DEFAULT_GOSSIP_RETENTION_MS
    this.prepared = prepare(db)
    this.incremental = pragma(db, 'auto_vacuum') === AUTO_VACUUM_INCREMENTAL
    this.slackPages = Math.ceil(VACUUM_SLACK_BYTES / pragma(db, 'page_size'))
    if (init.selfPeerId != null) this.bindIdentity(init.selfPeerId, init.readOnly === true)
  }

  /** The peer id the file is bound to (the node that first opened it writable), if any yet. */
  get owner (): string | undefined {
    return (this.db.prepare("SELECT value FROM meta WHERE key = 'self'").get() as { value: string } | undefined)?.value
  }

  /** A ledger holds one identity's spending: opening it as another peer is a data-dir mix-up. */
  private bindIdentity (peer: PeerId, readOnly: boolean): void {
    const id = peer.toString()
    const owner = this.owner
    if (owner == null) {
      // read-only: checked, not bound; the node binds it when it opens the file
      if (readOnly) return
      this.db.prepare("INSERT INTO meta (key, value) VALUES ('self', ?)").run(id)
    } else if (owner !== id) {
      // open() closes the file on its way out
      throw new LedgerError(LedgerErrorCode.WRONG_IDENTITY, `ledger ${this.file} belongs to peer ${owner}, not to ${id}. Use the identity.key that goes with it; or, to start over with this identity, move ${this.file} aside and start again, or choose another --data-dir (spareband never resets a ledger)`, this.file)
    }
  }

  private get db (): DatabaseSync {
    if (this.database == null) throw new LedgerError(LedgerErrorCode.CLOSED, `ledger ${this.file} is closed`, this.file)
    return this.database
  }

  // every access goes through the open check, so use after close() is a LedgerError, not an SQLite one
  private get statements (): Statements {
    void this.db
    return this.prepared
  }

  /**
   * Verifies a countersigned receipt and stores it if it advances its
   * session. Each call commits its own transaction before returning.
   * Throws ReceiptError for invalid, regressing, replayed or conflicting
   * receipts; an exact copy of the stored one is 'duplicate'.
   */
  async recordReceipt (r: Receipt, source: ReceiptSource, options?: AbortOptions & { verified?: boolean }): Promise<RecordResult> {
    // receipts queued earlier go first: a session's receipts are applied in the order they came
    this.flush()
    checkReceiptFields(r)
    const encoded = encodeReceipt(r)
    const id = receiptId(r)
    let receipt: CountersignedReceipt
    if (options?.verified === true) {
      // the caller has just checked both signatures of this very object (our
      // own sessions, on the data path, a receipt per MiB): not again, and its
      // encoding is canonical by construction
      receipt = r as CountersignedReceipt
    } else {
      // why first: gossip repeats receipts; a byte-identical copy of a stored
      // (hence verified) receipt needs no signature checks
      const before = this.statements.getReceipt.get(id) as Record<string, any> | undefined
      if (before != null && uint8ArrayEquals(before.encoded, encoded)) return 'duplicate'
      // a replay of a pruned session costs no signature checks either. An
      // unchecked forgery is thereby refused as EXPIRED (Ignore), not as
      // forged: it is not forwarded, and costs us a lookup
      if (before == null) this.refuseIfPruned(r, source)
      // verify and store the canonical copy, not the caller's object
      receipt = decodeReceipt(encoded) as CountersignedReceipt
      await verifyReceipt(receipt, options)
    }
    if (source === 'own') this.assertOwn(receipt)
    return this.transaction(() => this.apply(id, receipt, encoded, source))
  }

  private assertOwn (r: CountersignedReceipt): void {
    if (this.self == null) return
    if (!this.involvesSelf(r)) {
      throw new ReceiptError({ code: ReceiptErrorCode.WRONG_PEER, reason: "an 'own' receipt must have this node as consumer or exit" })
    }
  }

  /** Whether this node is the consumer or the exit of `r` (never, without a selfPeerId). */
  private involvesSelf (r: Receipt): boolean {
    return this.self != null && (uint8ArrayEquals(r.consumer!, this.self) || uint8ArrayEquals(r.exit!, this.self))
  }

  /**
   * Throws EXPIRED for gossip of a third party's session that this file
   * does not hold and that started before a pruned one did: it may be a
   * session pruneGossip() deleted, and taken as new it would be credited
   * its whole cumulative amount a second time. The caller has found no row.
   */
  private refuseIfPruned (r: Receipt, source: ReceiptSource): void {
    if (source !== 'gossip' || this.involvesSelf(r)) return
    const prunedBefore = this.prunedBefore()
    if (prunedBefore != null && r.startedAt! < prunedBefore) {
      throw new ReceiptError({ code: ReceiptErrorCode.EXPIRED, sessionId: r.sessionId!, startedAt: r.startedAt!, prunedBefore })
    }
  }

  private prunedBefore (): bigint | undefined {
    if (this.prunedBeforeCache === undefined) {
      const row = this.statements.getPrunedBefore.get() as { value: string } | undefined
      this.prunedBeforeCache = row == null ? null : BigInt(row.value)
    }
    return this.prunedBeforeCache ?? undefined
  }

  /**
   * Deletes up to `limit` third parties' sessions, oldest first, in one
   * transaction, and returns how many: 'gossip' rows of sessions this node
   * is not part of, that started before the retention horizon
   * (`gossipRetentionMs` ago) and whose last receipt reached us before it.
   * The open ledger calls this on a timer; totals, debts and proofs of
   * work are left as they are, so no balance changes.
   *
   * No double counting. A session's receipts are cumulative, and its row is
   * what tells its next receipt from a new session's: without it, a later
   * copy of the session's receipt (gossip repeats them, and anyone can
   * replay one) would be credited in full again. So the file remembers the
   * latest start of a session it pruned (PRUNED_BEFORE), and gossip of a
   * third party's session it does not hold that started before that is
   * refused (ReceiptError EXPIRED, which gossip Ignores: the sender did
   * nothing wrong). Every pruned session started before it, so none is
   * counted twice, whatever the clock does.
   *
   * Why the start must be past the horizon too: signers write their own
   * clocks, and one session dated ahead would otherwise carry
   * PRUNED_BEFORE past now and shut out every new session. Gossip takes
   * dates at most an hour ahead, so such a row waits that long at most.
   *
   * What it costs. No honest session in use is pruned: its exit gossips it
   * at least every publish interval (60 s), which renews its row, and a
   * consumer starts a new session after 30 s without traffic. Nor can a
   * consumer hide what it spends from pruning nodes by dating a session's
   * start far back: an exit refuses a start more than an hour before it
   * first saw the session (ExitSessions). What this
   * node no longer counts: a session it first hears of after its start
   * went past PRUNED_BEFORE, and receipts of a pruned session that its
   * signers take up again after the retention (what came before was
   * counted). A tombstone per pruned session (its id and what was counted)
   * would count those exactly, but tombstones would grow with every
   * session the network ever had, as rows did.
   */
  pruneGossip (limit = PRUNE_BATCH): number {
    if (this.gossipRetentionMs === 0) return 0
    const horizon = this.now() - this.gossipRetentionMs
    return this.transaction(() => {
      const pruned = this.statements.pruneGossip.all({ horizon, self: this.self ?? NO_PEER, limit }) as Array<{ id: string, started_at: bigint }>
      if (pruned.length === 0) return 0
      let before = this.prunedBefore() ?? 0n
      for (const row of pruned) {
        // the decoded copy would otherwise stand in for the row (held())
        this.recent.delete(row.id)
        if (row.started_at >= before) before = row.started_at + 1n
      }
      this.statements.putPrunedBefore.run(before.toString())
      this.prunedBeforeCache = before
      return pruned.length
    })
  }

  /**
   * Hands up to `pages` of the file's free pages back to the file system,
   * beyond VACUUM_SLACK_BYTES of them kept for new rows, in one transaction,
   * and returns how many: ledger.db shrinks by as much at the next
   * checkpoint. Rows stay where they are in their tables (their rowids
   * too); only pages move. The open ledger calls this on its pruning timer
   * once a pass leaves no full batch behind. Does nothing on a file that is
   * not INCREMENTAL (an old one compactAtOpen did not convert).
   */
  vacuumStep (pages = VACUUM_STEP_PAGES): number {
    // incremental_vacuum(0) would free the whole freelist in one go
    if (!(Number.isInteger(pages) && pages > 0)) throw new RangeError(`pages must be a positive integer, not ${pages}`)
    if (!this.incremental) return 0
    const free = (): number => Number((this.statements.freePages.get() as { freelist_count: number }).freelist_count)
    // the common case, nothing to give back: no transaction
    if (free() <= this.slackPages) return 0
    return this.transaction(() => {
      const before = free()
      const n = Math.min(pages, before - this.slackPages)
      if (n <= 0) return 0
      this.db.exec(`PRAGMA incremental_vacuum(${n})`)
      return before - free()
    })
  }

  /**
   * The next pruneGossip() in `delay` ms, then on: soon while a batch comes
   * back full, then while vacuumStep() gives pages back, else after
   * PRUNE_IDLE_MS. One or two short transactions a pass.
   */
  private schedulePrune (delay: number): void {
    this.pruneTimer = setTimeout(() => {
      let busy = false
      // closed meanwhile, or another connection held the lock: the next pass tries again
      try { busy = this.pruneGossip() === PRUNE_BATCH || this.vacuumStep() > 0 } catch {}
      if (this.database != null) this.schedulePrune(busy ? PRUNE_BUSY_MS : PRUNE_IDLE_MS)
    }, delay)
    // never what keeps a process alive
    this.pruneTimer.unref()
  }

  /** `held`: the session's stored receipt, when the caller has just looked it up in this transaction. */
  private apply (id: string, receipt: CountersignedReceipt, encoded: Uint8Array, source: ReceiptSource, held = this.held(id)): RecordResult {
    // held is read inside the transaction: another call may have advanced the session during verification
    const progress = checkProgress(held?.receipt, receipt)
    if (progress === 'duplicate') return 'duplicate'
    if (held == null) this.refuseIfPruned(receipt, source)
    const cost = costMicro(receipt.bytesUp + receipt.bytesDown, receipt.pricePerGb)
    const params = {
      id,
      bytes_up: receipt.bytesUp,
      bytes_down: receipt.bytesDown,
      seq: receipt.seq,
      updated_at: receipt.updatedAt,
      consumer_sig: receipt.consumerSig,
      exit_sig: receipt.exitSig,
      cost_micro: cost.toString(),
      encoded,
      // a receipt we took part in stays 'own' when gossip brings a newer copy
      source: held?.source === 'own' ? 'own' : source,
      received_at: this.now()
    }
    if (held == null) {
      this.statements.insertReceipt.run({
        ...params,
        session_id: receipt.sessionId,
        consumer: receipt.consumer,
        exit: receipt.exit,
        started_at: receipt.startedAt,
        price_per_gb: receipt.pricePerGb
      })
    } else {
      this.statements.updateReceipt.run(params)
    }
    const oldBytes = held == null ? 0n : held.receipt.bytesUp + held.receipt.bytesDown
    const deltaCost = cost - (held?.costMicro ?? 0n)
    const deltaBytes = receipt.bytesUp + receipt.bytesDown - oldBytes
    // the exit is credited only what the consumer can pay from its balance as
    // this ledger sees it now; the consumer is charged in full, so credit is
    // never made here, only moved: every credit in the network started as
    // someone's allowance, which costs a proof of work
    const paid = clamp(this.balanceMicro(receipt.consumer), 0n, deltaCost)
    const unpaid = deltaCost - paid
    this.addTotals(receipt.exit, { earned: paid, carried: deltaBytes, unpaid })
    this.addTotals(receipt.consumer, { spent: deltaCost, used: deltaBytes, owed: unpaid })
    if (unpaid > 0n) this.addDebt(receipt.consumer, receipt.exit, unpaid)
    // what the exit was paid goes first to those it owes itself (and what
    // settle() left over before is paid now): no query unless it owes
    this.settle(receipt.exit)
    this.settle(receipt.consumer)
    // and one peer that an earlier settle() ran out of steps for
    if (this.unsettled() > 0) this.settle((this.statements.firstUnsettled.get() as { peer: Uint8Array }).peer)
    this.remember({ id, receipt, source: params.source, receivedAt: params.received_at, costMicro: cost })
    return held == null ? 'inserted' : 'updated'
  }

  /**
   * The stored receipt of a session. A session's receipt is rewritten every
   * MiB: the copy written last is kept decoded, so the next write need
   * neither read nor decode the row.
   */
  private held (id: string): StoredReceipt | undefined {
    const hit = this.recent.get(id)
    if (hit != null) return hit
    const row = this.statements.getReceipt.get(id) as Record<string, any> | undefined
    return row == null ? undefined : rowToStored(row, this.file)
  }

  private remember (stored: StoredReceipt): void {
    this.recent.delete(stored.id)
    if (this.recent.size >= RECENT_RECEIPTS) this.recent.delete(this.recent.keys().next().value!)
    this.recent.set(stored.id, stored)
  }

  private totalsOf (peer: Uint8Array, key = hexOf(peer)): Totals | undefined {
    if (this.totals.has(key)) return this.totals.get(key)
    const row = this.statements.getTotals.get(peer) as Totals | undefined
    if (this.totals.size >= RECENT_RECEIPTS) this.totals.clear()
    this.totals.set(key, row)
    return row
  }

  private addTotals (peer: Uint8Array, delta: TotalsDelta): void {
    const key = hexOf(peer)
    const row = this.totalsOf(peer, key)
    const add = (column: keyof Totals, d = 0n): string => (BigInt(row?.[column] ?? '0') + d).toString()
    const next: Totals = {
      earned_micro: add('earned_micro', delta.earned),
      spent_micro: add('spent_micro', delta.spent),
      bytes_carried: add('bytes_carried', delta.carried),
      bytes_used: add('bytes_used', delta.used),
      unpaid_micro: add('unpaid_micro', delta.unpaid),
      owed_micro: add('owed_micro', delta.owed)
    }
    this.statements.putTotals.run(peer, next.earned_micro, next.spent_micro, next.bytes_carried, next.bytes_used, next.unpaid_micro, next.owed_micro)
    this.totals.set(key, next)
  }

  private dropCaches (): void {
    this.recent.clear()
    this.totals.clear()
    this.pows.clear()
    this.unsettledRows = undefined
    this.prunedBeforeCache = undefined
  }

  /** Drops the caches if another connection has committed to the file since we last looked. */
  private syncCaches (): void {
    const version = Number((this.statements.dataVersion.get() as { data_version: number }).data_version)
    if (version === this.dataVersion) return
    this.dropCaches()
    this.dataVersion = version
  }

  private transaction<T> (fn: () => T): T {
    try {
      this.db.exec('BEGIN IMMEDIATE')
    } catch (err) {
      // another connection held the write lock past the busy timeout, or the file went away
      if (err instanceof LedgerError) throw err
      throw sqliteFailure(this.file, err, 'write to')
    }
    try {
      // with the write lock held: no one else can commit until we are done
      this.syncCaches()
      const result = fn()
      this.db.exec('COMMIT')
      return result
    } catch (err) {
      // the caches may hold what was just rolled back
      this.dropCaches()
      rollBack(this.db)
      if (err instanceof ReceiptError || err instanceof LedgerError) throw err
      throw sqliteFailure(this.file, err, 'write to')
    }
  }

  /**
   * Queues a countersigned receipt of one of our own sessions (the
   * consumer's answer path) and resolves once it is committed. Queued
   * receipts are written together, at most `deferMs` later, before any read
   * or other write, and at close; a session's newest receipt is written for
   * the older ones of the batch that it covers, with one transaction and one
   * row write per session instead of one per receipt.
   *
   * Signatures are checked here, on the receipt that is written: the
   * caller need not have checked the exit's (countersignedAnswer() does
   * not). When every receipt of a session's batch advances on the one
   * before, only the newest is checked, as only it is written; otherwise,
   * or if it fails, each is checked in turn. The file ends as recording
   * each in turn would leave it (a receipt with a bad signature is never
   * written), and so do the outcomes, but for one case: a badly signed
   * receipt that a valid newer one covered in such a batch is not checked,
   * and reports 'updated'. And one exception in the totals: sessions are
   * applied one after the other, so when the consumer's balance runs out
   * within a batch, what it pays in total is the same, but how that is
   * split between its exits can differ from one-by-one recording (apply()).
   *
   * Why this is safe for the consumer: nothing it sends depends on the write
   * (unlike the exit, which must store before it answers), and each queued
   * receipt is appended to the pending journal before this returns, so a
   * process killed before the batch loses none of them (see
   * pending-journal.ts).
   */
  async recordLater (r: CountersignedReceipt): Promise<RecordResult> {
    checkReceiptFields(r)
    this.assertOwn(r)
    void this.db // closed: throw now, not at flush
    const encoded = encodeReceipt(r)
    // held until the flush: a receipt receipts.ts made cannot change meanwhile, any other is copied
    const receipt = madeHere(r) ? r : decodeReceipt(encoded) as CountersignedReceipt
    // on disk before the caller goes on: a killed process loses no receipt it was handed
    let unjournaled: LedgerError | undefined
    try {
      this.journal?.append(encoded)
    } catch (err: any) {
      // not on disk yet (a full disk): still written with the batch if SQLite finds room, but the
      // caller hears at once that a kill now would lose it
      const why = err?.code === 'ENOSPC' ? `the disk is full (writing ${this.file}.pending); free some space on it` : `${String(err?.code ?? err?.message)} writing ${this.file}.pending`
      unjournaled = new LedgerError(LedgerErrorCode.IO, `cannot write to ledger ${this.file}: ${why}`, this.file, { cause: err })
    }
    return new Promise((resolve, reject) => {
      if (unjournaled != null) reject(unjournaled)
      this.deferred.push({ id: receiptId(receipt), receipt, encoded, resolve, reject })
      if (this.deferred.length >= MAX_DEFERRED) this.flush()
      else if (this.deferTimer == null) {
        this.deferTimer = setTimeout(() => this.flush(), this.deferMs)
        this.deferTimer.unref()
      }
    })
  }

  /**
   * Writes what a killed process had queued with recordLater() (the
   * journal's receipts, checked like any queued receipt), then empties the
   * journal. Receipts that do not decode or check out are dropped.
   */
  private replayPending (): void {
    const file = `${this.file}.pending`
    let opened: ReturnType<typeof PendingJournal.open>
    try {
      opened = PendingJournal.open(file)
    } catch (err: any) {
      throw new LedgerError(LedgerErrorCode.IO, `cannot open ${file}, the receipts waiting to be written to ${this.file}: ${err.code ?? err.message}`, this.file)
    }
    const { journal, pending, droppedBytes } = opened
    this.journal = journal
    if (droppedBytes > 0) this.pendingDropped = { records: pending.length, droppedBytes }
    for (const encoded of pending) {
      let receipt: CountersignedReceipt
      try {
        receipt = decodeReceipt(encoded) as CountersignedReceipt
      } catch {
        continue
      }
      this.deferred.push({ id: receiptId(receipt), receipt, encoded, resolve: () => {}, reject: () => {} })
    }
    if (this.deferred.length > 0) this.flush()
    else {
      try {
        journal.clear()
      } catch (err: any) {
        journal.close()
        throw new LedgerError(LedgerErrorCode.IO, `cannot empty ${file}: ${err.code ?? err.message}`, this.file)
      }
    }
  }

  /** Writes what recordLater() has queued, in one transaction. */
  flush (): void {
    clearTimeout(this.deferTimer)
    this.deferTimer = undefined
    if ((this.deferred.length === 0 && this.retry.length === 0) || this.database == null) return
    const batch = [...this.retry, ...this.deferred]
    this.retry = []
    this.deferred = []
    const bySession = new Map<string, Deferred[]>()
    for (const d of batch) {
      const group = bySession.get(d.id)
      if (group == null) bySession.set(d.id, [d])
      else group.push(d)
    }
    let outcomes: Map<Deferred, RecordResult | Error>
    try {
      outcomes = this.transaction(() => {
        const out = new Map<Deferred, RecordResult | Error>()
        for (const group of bySession.values()) this.applyDeferred(group, out)
        return out
      })
    } catch (err: any) {
      for (const d of batch) d.reject(err)
      // written with the next batch (the journal keeps them until then): the
      // newest of each session is enough, receipts being cumulative
      const newest = new Map<string, Deferred>()
      for (const d of batch) {
        const held = newest.get(d.id)
        if (held == null || d.receipt.seq > held.receipt.seq) newest.set(d.id, d)
      }
      this.retry = [...newest.values()].map(d => ({ ...d, resolve: () => {}, reject: () => {} }))
      return
    }
    // committed: the journal's copies are no longer needed (a failure here
    // only means they are replayed, as duplicates, at the next open)
    try { this.journal?.clear() } catch {}
    for (const d of batch) {
      const outcome = outcomes.get(d)!
      if (outcome instanceof Error) d.reject(outcome)
      else d.resolve(outcome)
    }
  }

  /**
   * One session's queued receipts: each gets the outcome recording them
   * one by one would give, and only the last that advanced is written,
   * once its signatures are checked (see recordLater).
   */
  private applyDeferred (group: Deferred[], out: Map<Deferred, RecordResult | Error>): void {
    const stored = this.held(group[0].id)
    let plan = this.planDeferred(group, stored, out, false)
    // every receipt advanced on the one before, and the newest is sound: the
    // unchecked ones in between cannot change what is written (any of them
    // left out, the rest still advance, up to the same newest)
    if (!plan.allAdvanced || (plan.newest != null && !signaturesHold(plan.newest.receipt))) {
      // a duplicate, a regression or a bad signature in the batch: check each receipt, as recording them one by one would
      plan = this.planDeferred(group, stored, out, true)
    }
    if (plan.newest != null) this.apply(plan.newest.id, plan.newest.receipt, plan.newest.encoded, 'own', stored)
  }

  /**
   * Sets the outcome of each of a session's queued receipts, oldest first,
   * each checked against the one before it that advanced (the stored
   * receipt for the first); with `verify`, a receipt's signatures too.
   * Returns the last that advanced (the one to write), and whether all did.
   */
  private planDeferred (group: Deferred[], stored: StoredReceipt | undefined, out: Map<Deferred, RecordResult | Error>, verify: boolean): { newest?: Deferred, allAdvanced: boolean } {
    let current: CountersignedReceipt | undefined = stored?.receipt
    let newest: Deferred | undefined
    let allAdvanced = true
    for (const d of group) {
      try {
        if (verify) checkReceiptSignatures(d.receipt)
        const progress = checkProgress(current, d.receipt)
        if (progress === 'duplicate') {
          out.set(d, 'duplicate')
          allAdvanced = false
          continue
        }
        out.set(d, progress === 'new' ? 'inserted' : 'updated')
        current = d.receipt
        newest = d
      } catch (err: any) {
        if (!(err instanceof ReceiptError)) throw err
        out.set(d, err)
        allAdvanced = false
      }
    }
    return { newest, allAdvanced }
  }

  /** Stored receipts, newest first. */
  receipts (query: ReceiptQuery = {}): StoredReceipt[] {
    this.flush()
    const limit = query.limit ?? -1
    const rows = query.peer == null
      ? this.statements.listAll.all(limit)
      : this.statements.listByPeer.all({ peer: peerBytes(query.peer), limit })
    return rows.map(row => rowToStored(row, this.file))
  }

  /**
   * Where the receipts receipts() lists are, in its order, without the
   * receipts: a caller going through many (an export) reads them with
   * getByRowid() a few at a time, so it never holds them all nor keeps the
   * node busy for long. 8 bytes per session (a session keeps its rowid when
   * a newer receipt replaces its row): a million sessions take 8 MB, where
   * their ids as strings took about 100 MB.
   */
  receiptRowids (query: ReceiptQuery = {}): Float64Array {
    this.flush()
    const limit = query.limit ?? -1
    const rows = query.peer == null
      ? this.statements.listRowids.iterate(limit)
      : this.statements.listRowidsByPeer.iterate({ peer: peerBytes(query.peer), limit })
    let out = new Float64Array(1024)
    let n = 0
    for (const row of rows as Iterable<{ rowid: number | bigint }>) {
      if (n === out.length) {
        const grown = new Float64Array(out.length * 2)
        grown.set(out)
        out = grown
      }
      out[n++] = Number(row.rowid)
    }
    return out.subarray(0, n)
  }

  /** The stored receipt at a rowid from receiptRowids(). */
  getByRowid (rowid: number): StoredReceipt | undefined {
    this.flush()
    const row = this.statements.getByRowid.get(rowid) as Record<string, any> | undefined
    return row == null ? undefined : rowToStored(row, this.file)
  }

  /** The stored receipt of a session, by receiptId(). */
  get (id: string): StoredReceipt | undefined {
    this.flush()
    const row = this.statements.getReceipt.get(id) as Record<string, any> | undefined
    return row == null ? undefined : rowToStored(row, this.file)
  }

  /** Number of sessions stored. */
  get size (): number {
    this.flush()
    return Number((this.statements.count.get() as { n: number }).n)
  }

  /**
   * Records a peer's identity proof of work, which entitles it to the
   * allowance. Keeps the strongest proof seen. Throws INVALID_POW.
   */
  recordPow (peer: PeerId | Uint8Array, nonce: bigint, difficulty: number): void {
    const bytes = peerBytes(peer)
    if (!verifyPow(bytes, nonce, difficulty)) {
      throw new LedgerError(LedgerErrorCode.INVALID_POW, `nonce ${nonce} does not prove ${difficulty} bits of work`, this.file)
    }
    // the common case on the gossip path, a proof we hold: no write lock. A
    // stale cache can only be weaker than the file (proofs only get stronger)
    const cached = this.pow(bytes)
    if (cached != null && cached.difficulty >= difficulty) return
    // receipts queued earlier were recorded before this proof
    this.flush()
    // in a transaction, which syncs the caches: another connection may have
    // recorded a stronger proof, which a stale cache must not overwrite (nor does the upsert)
    this.transaction(() => {
      const held = this.pow(bytes)
      if (held != null && held.difficulty >= difficulty) return
      this.statements.putPow.run(bytes, nonce.toString(), difficulty, this.now())
      this.pows.delete(hexOf(bytes))
      // an allowance, newly granted, pays what the peer owes exits that carried for it before
      this.settle(bytes)
    })
  }

  /** Keeps a reputation report: the newer one of its exit and reporter replaces the older. */
  putReport (r: StoredReport): void {
    this.statements.putReport.run(r.subject, r.reporter, r.issuedAt, r.successes, r.failures)
  }

  dropReport (subject: Uint8Array, reporter: Uint8Array): void {
    this.statements.dropReport.run(subject, reporter)
  }

  /** Deletes the reports issued before `before` (ms). */
  dropReportsBefore (before: number): void {
    this.statements.dropReportsBefore.run(before)
  }

  /** The reports kept that were issued at `since` (ms) or later, oldest first. */
  reports (since: number): StoredReport[] {
    return (this.statements.listReports.all(since) as Array<{ subject: Uint8Array, reporter: Uint8Array, issued_at: number, successes: number, failures: number }>)
      .map(row => ({ subject: row.subject, reporter: row.reporter, issuedAt: Number(row.issued_at), successes: Number(row.successes), failures: Number(row.failures) }))
  }

  /** The recorded proof of work of a peer. */
  pow (peer: PeerId | Uint8Array): ProofOfWork | undefined {
    const bytes = peerBytes(peer)
    const key = hexOf(bytes)
    // apply() asks for every receipt it stores: a Map lookup, not a query, on the data path
    if (this.pows.has(key)) return this.pows.get(key)
    const row = this.statements.getPow.get(bytes) as { nonce: string, difficulty: number } | undefined
    const pow = row == null ? undefined : { nonce: BigInt(row.nonce), difficulty: Number(row.difficulty) }
    if (this.pows.size >= RECENT_RECEIPTS) this.pows.clear()
    this.pows.set(key, pow)
    return pow
  }

  /**
   * What `consumer` has paid `exit` by the receipts this ledger holds: what
   * they cost, less what the consumer still owes the exit (the part its
   * balance did not cover). Counting stops once it reaches `enough`, so a
   * pair with many sessions costs no more than needed. Pruned sessions no
   * longer count.
   */
  paidBetween (consumer: PeerId | Uint8Array, exit: PeerId | Uint8Array, enough?: bigint): bigint {
    const c = peerBytes(consumer)
    const e = peerBytes(exit)
    this.flush()
    let cost = 0n
    const owed = this.debtOf(c, e)
    for (const row of this.statements.costsBetween.iterate(c, e) as Iterable<{ cost_micro: string }>) {
      cost += BigInt(row.cost_micro)
      if (enough != null && cost >= enough + owed) break
    }
    const paid = cost - owed
    return paid > 0n ? paid : 0n
  }

  private debtOf (consumer: Uint8Array, exit: Uint8Array): bigint {
    const row = this.statements.getDebt.get(consumer, exit) as { amount_micro: string } | undefined
    return BigInt(row?.amount_micro ?? '0')
  }

  /** Credit position of a peer (this node when omitted), from the stored maxima. */
  balance (peer?: PeerId | Uint8Array): Balance {
    const bytes = peer == null ? this.self : peerBytes(peer)
    if (bytes == null) throw new TypeError('balance() needs a peer when the ledger has no selfPeerId')
    this.flush()
    this.syncCaches()
    const row = this.totalsOf(bytes)
    const earnedMicro = BigInt(row?.earned_micro ?? '0')
    const spentMicro = BigInt(row?.spent_micro ?? '0')
    const allowanceMicro = this.allowanceOf(bytes)
    return {
      earnedMicro,
      unpaidMicro: BigInt(row?.unpaid_micro ?? '0'),
      spentMicro,
      allowanceMicro,
      balanceMicro: allowanceMicro + earnedMicro - spentMicro,
      bytesCarried: BigInt(row?.bytes_carried ?? '0'),
      bytesUsed: BigInt(row?.bytes_used ?? '0')
    }
  }

  /** The allowance, if the peer's recorded proof of work meets this ledger's difficulty. */
  private allowanceOf (peer: Uint8Array): bigint {
    return (this.pow(peer)?.difficulty ?? -1) >= this.powDifficulty ? this.allowanceMicro : 0n
  }

  /**
   * Records that `consumer` owes `exit` `amount` more (apply() has added it
   * to both sides' totals). What the exit owes the consumer cancels it
   * first, as if each had paid the other that much: two keys with large
   * debts to each other would otherwise bounce every payment between them.
   */
  private addDebt (consumer: Uint8Array, exit: Uint8Array, amount: bigint): void {
    const reverse = this.debtOf(exit, consumer)
    const net = reverse < amount ? reverse : amount
    if (net > 0n) {
      this.setDebt(exit, consumer, reverse - net)
      this.addTotals(consumer, { earned: net, unpaid: -net, owed: -net })
      this.addTotals(exit, { earned: net, unpaid: -net, owed: -net })
    }
    if (amount > net) this.setDebt(consumer, exit, this.debtOf(consumer, exit) + amount - net)
  }

  private setDebt (consumer: Uint8Array, exit: Uint8Array, amount: bigint): void {
    if (amount === 0n) this.statements.dropDebt.run(consumer, exit)
    else this.statements.putDebt.run(consumer, exit, amount.toString())
  }

  /**
   * Pays `peer`'s debts, oldest first, with what its balance has grown by
   * since they were run up: what it owes beyond its deficit (how far its
   * balance is below zero). A peer's debts are never less than its deficit,
   * since it is charged in full for every receipt; when its balance grows
   * (it is paid as an exit, its proof of work arrives) the deficit shrinks
   * and the difference goes to its creditors. Their balances grow in turn,
   * so a chain of debts settles. Each peer pays once per call, and at most
   * SETTLE_STEPS payments are made (a ring of debts could otherwise go
   * round a long time): a peer left with something to pay is noted in
   * `unsettled`, and apply() settles one of those per receipt stored.
   * Credit is only moved, as in apply(): no one holds more than before.
   */
  private settle (first: Uint8Array): void {
    const queue = [first]
    const settled = new Set<string>()
    let steps = 0
    while (queue.length > 0) {
      const peer = queue.shift()!
      const owed = BigInt(this.totalsOf(peer)?.owed_micro ?? '0')
      // the common case, a peer that owes nothing: no query (unless it is noted as unsettled)
      if (owed === 0n) {
        this.noteSettled(peer, true)
        continue
      }
      const key = hexOf(peer)
      // paid again after it paid, or past the budget: what it has to pay now waits
      if (settled.has(key) || steps >= SETTLE_STEPS) {
        this.noteSettled(peer, false)
        continue
      }
      settled.add(key)
      const balance = this.balanceMicro(peer)
      let left = owed - (balance < 0n ? -balance : 0n)
      if (left <= 0n) {
        this.noteSettled(peer, true)
        continue
      }
      for (const row of this.statements.debtsOf.all(peer, SETTLE_STEPS - steps) as Array<{ exit: Uint8Array, amount_micro: string }>) {
        const amount = BigInt(row.amount_micro)
        const pay = amount < left ? amount : left
        this.addTotals(row.exit, { earned: pay, unpaid: -pay })
        this.addTotals(peer, { owed: -pay })
        this.setDebt(peer, row.exit, amount - pay)
        left -= pay
        steps++
        queue.push(row.exit)
        if (left === 0n) break
      }
      this.noteSettled(peer, left === 0n)
    }
  }

  /** Rows in `unsettled` (a query only when not known). */
  private unsettled (): number {
    this.unsettledRows ??= Number((this.statements.countUnsettled.get() as { n: number }).n)
    return this.unsettledRows
  }

  /** Notes whether `peer` has paid all it can now, or has more to pay later. */
  private noteSettled (peer: Uint8Array, done: boolean): void {
    if (done) {
      if (this.unsettled() > 0) this.unsettledRows! -= Number(this.statements.clearUnsettled.run(peer).changes)
    } else {
      this.unsettledRows = this.unsettled() + Number(this.statements.markUnsettled.run(peer).changes)
    }
  }

  /** allowance + earned - spent, inside a transaction (no flush): what apply() lets a consumer pay. */
  private balanceMicro (peer: Uint8Array): bigint {
    const row = this.totalsOf(peer)
    return this.allowanceOf(peer) + BigInt(row?.earned_micro ?? '0') - BigInt(row?.spent_micro ?? '0')
  }

  /**
   * Closes the file now; further calls throw LedgerError CLOSED. Idempotent.
   * The promise resolves once the checkpointer's connection is closed too:
   * until then SQLite may still remove the -wal and -shm files, so whoever
   * moves or deletes the directory next waits for it.
   */
  close (): Promise<void> {
    if (this.database == null) return this.closed ?? Promise.resolve()
    this.flush()
    clearTimeout(this.pruneTimer)
    this.journal?.close()
    this.closed = this.checkpointer?.stop() ?? Promise.resolve()
    // the checkpointer's connection may outlive ours by a moment, and SQLite
    // folds the WAL into the file only when the last connection closes: do it
    // here, so a closed ledger is one self-contained file (to copy, back up or
    // inspect); a failure only leaves the WAL for the next open
    if (this.checkpointer != null) {
      try { this.database.exec('PRAGMA wal_checkpoint(TRUNCATE)') } catch {}
    }
    this.database.close()
    this.database = undefined
    return this.closed
  }
}
