/**
 * Giving ledger.db's free pages back to the file system.
 *
 * SQLite keeps the pages of deleted rows on its freelist and reuses them,
 * but never shrinks the file unless told to: a node that once heard a burst
 * of gossip (or a flood of sybil receipts) and pruned it kept the file at
 * its largest for ever. In `auto_vacuum = INCREMENTAL` mode SQLite keeps a
 * map of each page's parent (one pointer-map page per ~800 pages), and
 * `PRAGMA incremental_vacuum(N)` moves up to N pages from the end of the
 * file into free slots and cuts the end off. The ledger does that after
 * its pruning batches, a bounded step per pass (Ledger.vacuumStep).
 *
 * The mode is fixed once the file has a table, so a new file gets it
 * before the first migration (makeIncremental). A file made before
 * (auto_vacuum NONE) can only switch by a full VACUUM, which rewrites it:
 * done once, when a node opens such a file and the rewrite is worth it
 * (compactAtOpen). Until then its free pages are reused as before.
 *
 * Durability: VACUUM and incremental_vacuum are ordinary SQLite write
 * transactions. In WAL mode their pages go to the WAL and reach ledger.db
 * at a checkpoint (which then truncates it), so a kill at any moment leaves
 * the file as it was before or after, never in between, and no committed
 * receipt is lost; nothing is copied or renamed. VACUUM keeps the rowid of
 * every row of a table with a PRIMARY KEY, which every ledger table has
 * (debts are paid oldest first by rowid; exports page through receipts by
 * rowid): a table without one would be renumbered, in the same order.
 */

import { accessSync, constants as fsConstants, statSync, statfsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname } from 'node:path'
import { MiB } from '../constants.ts'
import type { DatabaseSync } from 'node:sqlite'

// SQLite primary result codes, https://www.sqlite.org/rescode.html
const SQLITE_BUSY = 5
const SQLITE_LOCKED = 6

/** `PRAGMA auto_vacuum` values. */
export const AUTO_VACUUM_NONE = 0
export const AUTO_VACUUM_INCREMENTAL = 2

/**
 * An old file is rewritten at open only when its free pages come to at
 * least this much and at least COMPACT_MIN_FREE_SHARE of the file: below,
 * the space is not worth rewriting the file for, and the freelist is
 * reused anyway. The rewrite costs time in proportion to what the file
 * holds, at most three times what it gives back (0.22 s for an 87 MB
 * ledger holding 44 MB, 100,000 sessions half pruned, on a busy 2-core
 * machine), and is done once: the file is INCREMENTAL afterwards.
 */
export const COMPACT_MIN_FREE_BYTES = 4 * MiB
export const COMPACT_MIN_FREE_SHARE = 0.25
/** Left free on a disk after the rewrite's worst case: a node needs room for its receipts and logs. */
export const COMPACT_DISK_MARGIN_BYTES = 64 * MiB

/**
 * Free pages one vacuumStep() hands back (512 KiB of 4 KiB pages). Each
 * page moved from the end of the file rewrites it, its parent and the
 * pointer map: 0.9 ms a step (median; 1.9 ms p90) on a 90 MB ledger of
 * 100,000 sessions whose older half was pruned, about what a pruning
 * batch takes. At the busy pace (25 ms) that gives back 20 MiB a second.
 */
export const VACUUM_STEP_PAGES = 128
/**
 * Free pages kept for new rows: gossip comes and goes, and a file cut down
 * to the last page would grow again at once.
 */
export const VACUUM_SLACK_BYTES = MiB

/** SQLite's own account of the file. */
export interface PageCounts {
  pageSize: number
  /** Pages in the file, free ones included. */
  pages: number
  /** Pages on the freelist. */
  freePages: number
  /** AUTO_VACUUM_NONE, 1 (FULL) or AUTO_VACUUM_INCREMENTAL. */
  autoVacuum: number
}

/** What the open of an old file (auto_vacuum NONE) with a large freelist did about it. */
export interface LedgerCompaction {
  /**
   * 'converted': rewritten by VACUUM with auto_vacuum INCREMENTAL;
   * 'skipped': not tried, for lack of free disk; 'failed': SQLite gave up
   * (a lock held too long, the disk filled up): the file is as it was, and
   * the next open tries again.
   */
  outcome: 'converted' | 'skipped' | 'failed'
  /** The file's size before (pages × page size). */
  bytesBefore: number
  /** Its size after: as before unless converted. */
  bytesAfter: number
  /** What stood in the way, unless converted. */
  reason?: string
  /** How long it took. */
  ms: number
}

/** Free space where the rewrite writes: next to the file (the WAL) and SQLite's temporary directory. */
export interface DiskRoom {
  dataDir: string
  dataFreeBytes: number
  tempDir: string
  tempFreeBytes: number
  /** Both directories on one file system: the two needs add up. */
  sameDevice: boolean
}

export function pragma (db: DatabaseSync, name: string): number {
  return Number(Object.values(db.prepare(`PRAGMA ${name}`).get() ?? {})[0])
}

export function pageCounts (db: DatabaseSync): PageCounts {
  return { pageSize: pragma(db, 'page_size'), pages: pragma(db, 'page_count'), freePages: pragma(db, 'freelist_count'), autoVacuum: pragma(db, 'auto_vacuum') }
}

/**
 * A new (empty) file's auto_vacuum. Called before anything else writes to
 * it: SQLite takes the setting only while the file has no page, and
 * `journal_mode = WAL` writes the first. A file left empty by an open that
 * stopped half way has one already; rewriting it takes nothing.
 */
export function makeIncremental (db: DatabaseSync): void {
  db.exec('PRAGMA auto_vacuum = INCREMENTAL')
  if (pragma(db, 'auto_vacuum') !== AUTO_VACUUM_INCREMENTAL) db.exec('VACUUM')
}

/** Whether an old file's free pages are worth a rewrite (pure). */
export function compactionDue (p: PageCounts): boolean {
  return p.autoVacuum === AUTO_VACUUM_NONE &&
    p.freePages * p.pageSize >= COMPACT_MIN_FREE_BYTES &&
    p.freePages >= p.pages * COMPACT_MIN_FREE_SHARE
}

const mib = (bytes: number): string => `${Math.ceil(bytes / MiB)} MiB`

/**
 * Why the disks lack room for a VACUUM of `p`'s file, or undefined (pure).
 * VACUUM copies the rows into a temporary database, then writes every page
 * of the new file into the WAL (with a 24-byte header each) before a
 * checkpoint copies them over the old: about what the file holds, twice.
 */
export function diskShortfall (p: PageCounts, room: DiskRoom): string | undefined {
  const used = (p.pages - p.freePages) * p.pageSize
  const wal = used + (p.pages - p.freePages) * 24
  const needs = room.sameDevice
    ? [{ dir: room.dataDir, free: room.dataFreeBytes, need: wal + used, what: 'the WAL and the temporary copy' }]
    : [{ dir: room.dataDir, free: room.dataFreeBytes, need: wal, what: 'the WAL' }, { dir: room.tempDir, free: room.tempFreeBytes, need: used, what: 'the temporary copy' }]
  for (const { dir, free, need, what } of needs) {
    if (free < need + COMPACT_DISK_MARGIN_BYTES) return `the rewrite needs ${mib(need)} free in ${dir} for ${what}, and ${mib(COMPACT_DISK_MARGIN_BYTES)} to spare; it has ${mib(free)}`
  }
  return undefined
}

/**
 * Where SQLite puts VACUUM's temporary database: the first usable of
 * $SQLITE_TMPDIR, $TMPDIR, /var/tmp, /usr/tmp and /tmp on Unix (os_unix.c),
 * the system's temporary directory on Windows.
 */
function sqliteTempDir (): string {
  if (process.platform === 'win32') return tmpdir()
  for (const dir of [process.env.SQLITE_TMPDIR, process.env.TMPDIR, '/var/tmp', '/usr/tmp', '/tmp']) {
    if (dir == null || dir === '') continue
    try {
      if (!statSync(dir).isDirectory()) continue
      accessSync(dir, fsConstants.W_OK | fsConstants.X_OK)
      return dir
    } catch {}
  }
  return '.'
}

function diskRoom (file: string): DiskRoom {
  const dataDir = dirname(file)
  const tempDir = sqliteTempDir()
  const free = (dir: string): number => {
    const s = statfsSync(dir)
    return Number(s.bavail) * Number(s.bsize)
  }
  return { dataDir, dataFreeBytes: free(dataDir), tempDir, tempFreeBytes: free(tempDir), sameDevice: statSync(dataDir).dev === statSync(tempDir).dev }
}

/**
 * Converts an old file (auto_vacuum NONE) whose freelist is worth it to
 * INCREMENTAL with one VACUUM, when the disks have room for it, and folds
 * the WAL back into the file so it shrinks at once. A writable open calls
 * this, with no other statement of its connection running. Returns what
 * it did, or undefined when there was nothing to do. Never throws: a
 * VACUUM that fails rolls back, the file stays as it was (NONE, its
 * freelist reused as before) and the ledger goes on.
 */
export function compactAtOpen (db: DatabaseSync, file: string, room: (file: string) => DiskRoom = diskRoom): LedgerCompaction | undefined {
  const started = performance.now()
  let before: PageCounts
  try {
    before = pageCounts(db)
  } catch {
    return undefined
  }
  if (!compactionDue(before)) return undefined
  const bytesBefore = before.pages * before.pageSize
  const unchanged = (outcome: 'skipped' | 'failed', reason: string): LedgerCompaction =>
    ({ outcome, bytesBefore, bytesAfter: bytesBefore, reason, ms: performance.now() - started })
  try {
    const shortfall = diskShortfall(before, room(file))
    if (shortfall != null) return unchanged('skipped', shortfall)
  } catch (err: any) {
    return unchanged('skipped', `cannot tell how much disk is free: ${err.message}`)
  }
  try {
    db.exec('PRAGMA auto_vacuum = INCREMENTAL')
    db.exec('VACUUM')
  } catch (err: any) {
    // SQLite has rolled back; the setting would otherwise wait for the next VACUUM
    try { db.exec('PRAGMA auto_vacuum = NONE') } catch {}
    // the WAL may have grown with the attempt (a full disk): give that back
    // too, only committed frames are copied. Not when the lock was the
    // trouble: nothing was written, and it would wait for it again
    const code = err?.errcode & 0xff
    if (code !== SQLITE_BUSY && code !== SQLITE_LOCKED) {
      try { db.exec('PRAGMA wal_checkpoint(TRUNCATE)') } catch {}
    }
    return unchanged('failed', err.message)
  }
  // the file shrinks once the WAL is folded into it: now, unless a reader
  // holds an old snapshot (then the checkpointer does it later)
  try { db.exec('PRAGMA wal_checkpoint(TRUNCATE)') } catch {}
  let bytesAfter = bytesBefore
  try {
    const after = pageCounts(db)
    bytesAfter = after.pages * after.pageSize
  } catch {}
  return { outcome: 'converted', bytesBefore, bytesAfter, ms: performance.now() - started }
}
