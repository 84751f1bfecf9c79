/**
 * ledger.db gives back the space of what pruning deletes: new files are
 * made with `auto_vacuum = INCREMENTAL` and the prune timer hands freed
 * pages back a step at a time; an old file (auto_vacuum NONE) with a large
 * freelist is converted, once, when a node opens it. Real ledger files in
 * temporary directories, with an injected clock; sizes are of the file
 * after close() (which folds the WAL into it).
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Ledger } from '../../src/accounting/ledger.ts'
import { COMPACT_DISK_MARGIN_BYTES, COMPACT_MIN_FREE_BYTES, VACUUM_SLACK_BYTES, compactAtOpen, compactionDue, diskShortfall } from '../../src/accounting/ledger-vacuum.ts'
import { ledgerFilePerTest } from '../utils/ledger-file.ts'
import { quickCountersigned } from './big-export.ts'
import { parties } from './fixtures.ts'
import type { Balance, LedgerInit, StoredReceipt } from '../../src/accounting/ledger.ts'
import type { DiskRoom, PageCounts } from '../../src/accounting/ledger-vacuum.ts'
import type { Party } from './fixtures.ts'

const DAY = 86_400_000
const RETENTION = 30 * DAY
/** When the tests begin, on the ledger's clock. */
const T0 = 1_800_000_000_000
/** Third parties' sessions in a filled ledger: about 6 MB of rows and index entries. */
const GOSSIPED = 8_000
/** Sessions of this node's own in a filled ledger: half before the third parties', half after (their rowids come after a gap once those are pruned). */
const OWN = 6

/** alice is this node; bob, carol and dave deal with each other, and bob with alice too. */
let alice: Party
let bob: Party
let carol: Party
let dave: Party
let clock: number
const temp = ledgerFilePerTest('spareband-vacuum-')

beforeAll(async () => {
  [alice, bob, carol, dave] = await parties(4)
})

beforeEach(() => { clock = T0 })

function open (init: LedgerInit = {}): Ledger {
  return Ledger.open(temp.file, { selfPeerId: peerIdFromPrivateKey(alice.key), now: () => clock, gossipRetentionMs: RETENTION, ...init })
}

/** Runs `fn` on the ledger and closes it, whatever happens (the directory is removed after the test). */
async function withLedger<T> (fn: (ledger: Ledger) => T | Promise<T>, init: LedgerInit = {}): Promise<T> {
  const ledger = open(init)
  try {
    return await fn(ledger)
  } finally {
    await ledger.close()
  }
}

/** `n` third parties' sessions, heard of over gossip now (signed here, so not checked again). */
async function gossip (ledger: Ledger, n: number, prefix = 'g'): Promise<void> {
  const trio = [bob, carol, dave]
  const start = BigInt(clock)
  for (let i = 0; i < n; i++) {
    const r = quickCountersigned(trio[i % 3], trio[(i + 1) % 3], { sessionId: `${prefix}-${i}`, seq: 1n, startedAt: start, updatedAt: start + 60_000n, bytesUp: 1_000n, bytesDown: 1_000_000n + BigInt(i), pricePerGb: 1_000_000n })
    await ledger.recordReceipt(r, 'gossip', { verified: true })
  }
}

/** Half of this node's sessions with bob, both ways, two receipts each. */
async function own (ledger: Ledger, prefix: string): Promise<void> {
  const start = BigInt(clock)
  for (let i = 0; i < OWN / 2; i++) {
    for (let seq = 1n; seq <= 2n; seq++) {
      const [consumer, exit] = i % 2 === 0 ? [alice, bob] : [bob, alice]
      await ledger.recordReceipt(quickCountersigned(consumer, exit, { sessionId: `${prefix}-${i}`, seq, startedAt: start, updatedAt: start + seq * 60_000n, bytesUp: seq * 1_000n, bytesDown: seq * 5_000_000n, pricePerGb: 1_000_000n }), 'own', { verified: true })
    }
  }
}

/** OWN sessions of this node's around `n` third parties' ones. */
async function fill (ledger: Ledger, n: number): Promise<void> {
  await own(ledger, 'own')
  await gossip(ledger, n)
  await own(ledger, 'own-late')
}

/**
 * What must never change: this node's receipts, where they are (a rowid
 * changed would break an export under way), every balance, and the debts
 * in the order they are paid (by rowid).
 */
function holdings (ledger: Ledger): { own: StoredReceipt[], rowids: number[], balances: Balance[], debts: unknown[] } {
  const db = new DatabaseSync(temp.file, { readOnly: true })
  try {
    return {
      own: ledger.receipts({ peer: alice.bytes }),
      rowids: Array.from(ledger.receiptRowids({ peer: alice.bytes })),
      balances: [alice, bob, carol, dave].map(p => ledger.balance(p.bytes)),
      debts: db.prepare('SELECT rowid, * FROM debts ORDER BY rowid').all()
    }
  } finally {
    db.close()
  }
}

/** What SQLite says of the file, through a read-only connection of the test's own. */
function pages (file = temp.file): PageCounts {
  const db = new DatabaseSync(file, { readOnly: true })
  const read = (pragma: string): number => Number(Object.values(db.prepare(`PRAGMA ${pragma}`).get()!)[0])
  try {
    return { autoVacuum: read('auto_vacuum'), pageSize: read('page_size'), pages: read('page_count'), freePages: read('freelist_count') }
  } finally {
    db.close()
  }
}

const sizeOf = (file = temp.file): number => statSync(file).size
const digest = (file = temp.file): string => createHash('sha256').update(readFileSync(file)).digest('hex')

/**
 * A closed ledger as an older spareband left it (auto_vacuum NONE) with
 * OWN sessions of this node's and GOSSIPED third parties' ones, all but
 * `keep` of which it has pruned: their pages are on its freelist.
 * Returns what it holds.
 */
async function oldFile (keep = 0): Promise<ReturnType<typeof holdings>> {
  await withLedger(async ledger => {
    await own(ledger, 'own')
    await gossip(ledger, GOSSIPED - keep)
    clock += 20 * DAY
    await gossip(ledger, keep, 'kept')
    await own(ledger, 'own-late')
  })
  const db = new DatabaseSync(temp.file)
  db.exec('PRAGMA auto_vacuum = NONE; VACUUM')
  db.close()
  expect(pages()).toMatchObject({ autoVacuum: 0, freePages: 0 })
  // the old rows are past the retention, the kept ones not yet
  clock += 11 * DAY
  return await withLedger(ledger => {
    const held = holdings(ledger)
    expect(ledger.pruneGossip(1_000_000)).toBe(GOSSIPED - keep)
    return held
  })
}

describe('a new ledger', () => {
  it('is made with auto_vacuum = INCREMENTAL, set before its first table', async () => {
    await withLedger(() => {})
    expect(pages().autoVacuum).toBe(2)
  })

  it('is INCREMENTAL too when an open that stopped half way left the file in WAL mode, without a table', async () => {
    const db = new DatabaseSync(temp.file)
    db.exec('PRAGMA journal_mode = WAL')
    db.close()
    expect(pages().autoVacuum).toBe(0)
    await withLedger(ledger => { expect(ledger.compaction).toBeUndefined() })
    expect(pages().autoVacuum).toBe(2)
  })
})

describe('pruning gives the space back', () => {
  it('the prune timer deletes a backlog and then shrinks the file a step at a time; this node\'s receipts and every balance stay', async () => {
    const before = await withLedger(async ledger => {
      await fill(ledger, GOSSIPED)
      return holdings(ledger)
    })
    const full = sizeOf()
    expect(full).toBeGreaterThan(4_000_000)

    // past the retention: the node's timer prunes the lot, a batch at a time, then gives the pages back
    clock += 31 * DAY
    const after = await withLedger(async ledger => {
      await expect.poll(() => ledger.size, { timeout: 30_000, interval: 100 }).toBe(OWN)
      // until the file stops shrinking
      let last = -1
      for (let now = pages().pages; now !== last; now = pages().pages) {
        last = now
        await new Promise(resolve => setTimeout(resolve, 300))
      }
      return holdings(ledger)
    })
    const pruned = sizeOf()
    expect(pruned).toBeLessThan(full / 4)
    expect(after).toEqual(before)
    expect(after.own).toHaveLength(OWN)
    expect(Math.max(...after.rowids)).toBeGreaterThan(GOSSIPED)
    expect(after.debts.length).toBeGreaterThan(0)
  })
})

describe('vacuumStep', () => {
  it('gives back at most the pages asked for at a time, and keeps VACUUM_SLACK_BYTES of them for new rows', async () => {
    await withLedger(async ledger => {
      await gossip(ledger, 3_000)
      clock += 31 * DAY
      expect(ledger.pruneGossip(1_000_000)).toBe(3_000)
      const { freePages, pageSize } = pages()
      const slack = VACUUM_SLACK_BYTES / pageSize
      expect(freePages).toBeGreaterThan(slack + 16)
      expect(ledger.vacuumStep(16)).toBe(16)
      expect(pages().freePages).toBe(freePages - 16)
      while (ledger.vacuumStep() > 0);
      expect(pages().freePages).toBe(slack)
      // 0 would be SQLite's "all of them"
      expect(() => ledger.vacuumStep(0)).toThrow(RangeError)
    })
  })
})

describe('an old file (auto_vacuum NONE)', () => {
  it('with a large freelist is converted when a node opens it, and shrinks; this node\'s receipts and every balance stay', async () => {
    const before = await oldFile()
    const full = sizeOf()
    expect(pages().freePages * pages().pageSize).toBeGreaterThan(4_000_000)

    const { after, compaction } = await withLedger(ledger => ({ after: holdings(ledger), compaction: ledger.compaction }))
    const converted = sizeOf()
    expect(converted).toBeLessThan(full / 4)
    expect(pages()).toMatchObject({ autoVacuum: 2, freePages: 0 })
    expect(after).toEqual(before)
    expect(Math.max(...after.rowids)).toBeGreaterThan(GOSSIPED)
    // what the node reports
    expect(compaction).toMatchObject({ outcome: 'converted', bytesBefore: full, bytesAfter: converted })

    // once: the next open has nothing to convert
    await withLedger(ledger => { expect(ledger.compaction).toBeUndefined() })
  })

  it('with a small freelist is left as it is, and converted once the freelist has grown large', async () => {
    // 50 sessions pruned: a few dozen pages, not worth rewriting the file at every start
    await oldFile(GOSSIPED - 50)
    const small = pages()
    expect(small.freePages).toBeGreaterThan(0)
    for (let i = 0; i < 2; i++) {
      await withLedger(ledger => { expect(ledger.compaction).toBeUndefined() })
      expect(pages()).toEqual(small)
    }

    // the rest go past the retention: the next open after they are pruned converts the file
    clock += 20 * DAY
    await withLedger(ledger => { expect(ledger.pruneGossip(1_000_000)).toBe(GOSSIPED - 50) })
    const full = sizeOf()
    const compaction = await withLedger(ledger => ledger.compaction)
    expect(pages()).toMatchObject({ autoVacuum: 2, freePages: 0 })
    expect(sizeOf()).toBeLessThan(full / 4)
    expect(compaction?.outcome).toBe('converted')
  })

  it('stays as it was, and the ledger works, when the conversion fails', async () => {
    const before = await oldFile()
    const hash = digest()
    // another connection holds the write lock: VACUUM gives up after the busy timeout
    const holder = new DatabaseSync(temp.file)
    holder.exec('BEGIN IMMEDIATE')
    let ledger: Ledger
    try {
      ledger = open()
    } finally {
      holder.exec('ROLLBACK')
      holder.close()
    }
    try {
      expect(ledger.compaction).toMatchObject({ outcome: 'failed' })
      expect(digest()).toBe(hash)
      expect(holdings(ledger)).toEqual(before)
      // and it goes on
      await gossip(ledger, 1, 'after')
      expect(ledger.size).toBe(OWN + 1)
    } finally {
      await ledger.close()
    }
    expect(pages().autoVacuum).toBe(0)
  }, 30_000)

  it('is left as it was when the disk lacks room for the rewrite', async () => {
    await oldFile()
    const hash = digest()
    const db = new DatabaseSync(temp.file)
    try {
      const room: DiskRoom = { dataDir: 'data', dataFreeBytes: 10 * COMPACT_DISK_MARGIN_BYTES, tempDir: 'tmp', tempFreeBytes: COMPACT_DISK_MARGIN_BYTES, sameDevice: false }
      expect(compactAtOpen(db, temp.file, () => room)).toMatchObject({ outcome: 'skipped', reason: expect.stringMatching(/free in tmp for the temporary copy/) })
    } finally {
      db.close()
    }
    expect(digest()).toBe(hash)
    expect(pages().autoVacuum).toBe(0)
  })
})

describe('when an old file is worth rewriting', () => {
  const page = 4096
  const worth = COMPACT_MIN_FREE_BYTES / page
  const none = (pages: number, freePages: number): PageCounts => ({ pageSize: page, pages, freePages, autoVacuum: 0 })

  it('takes free pages of COMPACT_MIN_FREE_BYTES and a quarter of the file, on a file not INCREMENTAL already', () => {
    expect(compactionDue(none(4 * worth, worth))).toBe(true)
    expect(compactionDue(none(4 * worth, worth - 1))).toBe(false)
    expect(compactionDue(none(4 * worth + 1, worth))).toBe(false)
    expect(compactionDue(none(100 * worth, 90 * worth))).toBe(true)
    expect(compactionDue({ ...none(4 * worth, worth), autoVacuum: 2 })).toBe(false)
  })

  it('needs room for what the file holds twice (the WAL and the temporary copy), and a margin', () => {
    const p = none(4 * worth, worth)
    const used = 3 * worth * page
    const wal = used + 3 * worth * 24
    const room = (dataFreeBytes: number, tempFreeBytes: number, sameDevice: boolean): DiskRoom => ({ dataDir: 'data', dataFreeBytes, tempDir: 'tmp', tempFreeBytes, sameDevice })
    const margin = COMPACT_DISK_MARGIN_BYTES
    expect(diskShortfall(p, room(wal + used + margin, 0, true))).toBeUndefined()
    expect(diskShortfall(p, room(wal + used + margin - 1, 0, true))).toMatch(/free in data for the WAL and the temporary copy/)
    expect(diskShortfall(p, room(wal + margin, used + margin, false))).toBeUndefined()
    expect(diskShortfall(p, room(wal + margin - 1, used + margin, false))).toMatch(/free in data for the WAL,/)
    expect(diskShortfall(p, room(wal + margin, used + margin - 1, false))).toMatch(/free in tmp for the temporary copy/)
  })
})

describe('a read-only open', () => {
  it('of a file a writable open would convert leaves it byte for byte as it was', async () => {
    const before = await oldFile()
    const hash = digest()
    const ledger = open({ readOnly: true })
    try {
      expect(ledger.compaction).toBeUndefined()
      expect(holdings(ledger)).toEqual(before)
    } finally {
      await ledger.close()
    }
    expect(digest()).toBe(hash)
    expect(existsSync(`${temp.file}-wal`) ? sizeOf(`${temp.file}-wal`) : 0).toBe(0)

    // it was one: a node's open converts it
    await withLedger(() => {})
    expect(pages()).toMatchObject({ autoVacuum: 2, freePages: 0 })
  })
})
