/**
 * The SQLite ledger: recording, balances, persistence across reopen, and
 * refusing files that are not a healthy spareband ledger of this identity.
 * Every test works in its own temporary directory.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { costMicro, solvePow } from '../../src/accounting/credits.ts'
import { LedgerErrorCode, ReceiptErrorCode } from '../../src/accounting/errors.ts'
import { LEDGER_SCHEMA_VERSION, Ledger } from '../../src/accounting/ledger.ts'
import { receiptId } from '../../src/accounting/receipts.ts'
import { writeUntilKilled } from './killed-writer.ts'
import { caught, countersigned, parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'

let alice: Party
let bob: Party
let carol: Party
let dave: Party
let dir: string
let file: string

beforeAll(async () => {
  [alice, bob, carol, dave] = await parties(4)
})

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'spareband-ledger-'))
  file = join(dir, 'ledger.db')
})

afterEach(() => {
  // a test that did not wait for close() may leave SQLite removing the -wal and -shm files
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 })
})

async function waitUntil (ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

function ledgerError (fn: () => unknown): any {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected a LedgerError')
}

describe('recording receipts', () => {
  it('inserts, updates and ignores duplicates', async () => {
    const ledger = Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key) })
    const r1 = await countersigned(alice, bob, { seq: 1n, bytesUp: 10n, bytesDown: 100n })
    const r2 = await countersigned(alice, bob, { seq: 2n, bytesUp: 20n, bytesDown: 2_000_000_000n })
    expect(await ledger.recordReceipt(r1, 'own')).toBe('inserted')
    expect(await ledger.recordReceipt(r2, 'own')).toBe('updated')
    expect(await ledger.recordReceipt(r2, 'gossip')).toBe('duplicate')
    expect(ledger.size).toBe(1)
    const stored = ledger.get(receiptId(r2))!
    expect(stored.receipt).toEqual(r2)
    expect(stored.source).toBe('own')
    expect(stored.costMicro).toBe(costMicro(2_000_000_020n, r2.pricePerGb))
    await ledger.close()
  })

  it('rejects regressions, replays from another session and bad signatures', async () => {
    const ledger = Ledger.open(file)
    const r1 = await countersigned(alice, bob, { seq: 1n, bytesDown: 100n })
    const r2 = await countersigned(alice, bob, { seq: 2n, bytesDown: 200n })
    await ledger.recordReceipt(r2, 'gossip')
    expect((await caught(async () => ledger.recordReceipt(r1, 'gossip'))).code).toBe(ReceiptErrorCode.REGRESSED)
    const old = await countersigned(alice, bob, { seq: 3n, bytesDown: 300n, startedAt: 1n })
    expect((await caught(async () => ledger.recordReceipt(old, 'gossip'))).code).toBe(ReceiptErrorCode.REPLAY)
    const forged = { ...r2, seq: 5n }
    const err = await caught(async () => ledger.recordReceipt(forged, 'gossip'))
    expect(err.name).toBe('ReceiptError')
    expect(err.code).toBe(ReceiptErrorCode.BAD_CONSUMER_SIGNATURE)
    const unsigned = { ...r2, seq: 6n, exitSig: undefined }
    expect((await caught(async () => ledger.recordReceipt(unsigned, 'gossip'))).code).toBe(ReceiptErrorCode.BAD_EXIT_SIGNATURE)
    expect(ledger.get(receiptId(r2))!.receipt).toEqual(r2)
    await ledger.close()
  })

  it('checks progress against what the file holds, not against the copy it wrote last', async () => {
    // the ledger keeps its last write per session decoded; a second writer of the file must not fool it
    const self = peerIdFromPrivateKey(alice.key)
    const a = Ledger.open(file, { selfPeerId: self })
    const b = Ledger.open(file, { selfPeerId: self })
    const r = async (seq: bigint): Promise<any> => countersigned(alice, bob, { seq, bytesDown: seq * 100n })
    expect(await a.recordReceipt(await r(1n), 'own', { verified: true })).toBe('inserted')
    expect(await b.recordReceipt(await r(3n), 'own', { verified: true })).toBe('updated')
    expect((await caught(async () => a.recordReceipt(await r(2n), 'own', { verified: true }))).code).toBe(ReceiptErrorCode.REGRESSED)
    expect(await a.recordReceipt(await r(4n), 'own', { verified: true })).toBe('updated')
    expect(a.get(receiptId(await r(4n)))!.receipt.seq).toBe(4n)
    // and totals follow the file: the newest receipt's bytes (1,000 up, 400 down), whichever connection wrote
    expect(b.balance(self).bytesUsed).toBe(1_400n)
    await a.close()
    await b.close()
  })

  it('checkpoints its write-ahead log on a worker thread, never inside a commit', async () => {
    const ledger = Ledger.open(file)
    // the writer's own automatic checkpoint (an fsync on the event loop) is off
    expect(((ledger as any).db.prepare('PRAGMA wal_autocheckpoint').get() as any).wal_autocheckpoint).toBe(0)
    const before = statSync(file).size
    // 60 sessions: a few dozen new pages, far below any automatic threshold
    for (let i = 0; i < 60; i++) await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: `s-${i}` }), 'gossip')
    expect(statSync(`${file}-wal`).size).toBeGreaterThan(0)
    // only a checkpoint moves pages from the log into the database file
    await waitUntil(() => statSync(file).size > before, 5000)
    expect(ledger.size).toBe(60)
    await ledger.close()
    const reopened = Ledger.open(file)
    expect(reopened.size).toBe(60)
    await reopened.close()
  })

  it('once close() resolves, no connection is left: no -wal or -shm file, and the directory can go', async () => {
    for (let round = 0; round < 5; round++) {
      const ledger = Ledger.open(file)
      await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: `c-${round}` }), 'gossip')
      const worker = (ledger as any).checkpointer.worker
      await ledger.close()
      // its thread is gone (Node sets -1 once it no longer runs)
      expect(worker.threadId).toBe(-1)
      // the checkpointer's connection, closed last, is what removes the -wal and -shm files
      expect(readdirSync(dir).filter(f => f.endsWith('-wal') || f.endsWith('-shm'))).toEqual([])
    }
    const reopened = Ledger.open(file)
    expect(reopened.size).toBe(5)
    await reopened.close()
  })

  it('gives the rows of the listing, in its order, as 8-byte numbers, and a session keeps its row when a newer receipt replaces it', async () => {
    let clock = 1_000
    const ledger = Ledger.open(file, { now: () => clock++ })
    await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: 'a', seq: 1n, updatedAt: 1_700_000_001_000n }), 'gossip')
    await ledger.recordReceipt(await countersigned(bob, carol, { sessionId: 'b', updatedAt: 1_700_000_002_000n }), 'gossip')
    const rowids = ledger.receiptRowids()
    expect(rowids).toBeInstanceOf(Float64Array)
    expect([...rowids].map(r => ledger.getByRowid(r)?.receipt.sessionId)).toEqual(['b', 'a'])
    // an export that took its rows before session a moved on reads a's newest receipt at the same row
    await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: 'a', seq: 2n, bytesDown: 99_999n, updatedAt: 1_700_000_003_000n }), 'gossip')
    expect(ledger.getByRowid(rowids[1])?.receipt.seq).toBe(2n)
    expect([...ledger.receiptRowids()].map(r => ledger.getByRowid(r)?.receipt.sessionId)).toEqual(['a', 'b'])
    expect([...ledger.receiptRowids({ peer: carol.bytes })].map(r => ledger.getByRowid(r)?.receipt.sessionId)).toEqual(['b'])
    expect(ledger.receiptRowids({ limit: 1 }).length).toBe(1)
    await ledger.close()
  })

  it("refuses an 'own' receipt that does not involve this node", async () => {
    const ledger = Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key) })
    const r = await countersigned(bob, carol)
    expect((await caught(async () => ledger.recordReceipt(r, 'own'))).code).toBe(ReceiptErrorCode.WRONG_PEER)
    expect(await ledger.recordReceipt(r, 'gossip')).toBe('inserted')
    await ledger.close()
  })

  it('lists receipts newest first, by peer and with a limit', async () => {
    // newest by arrival: a clock that moves between the three
    let clock = 1_000
    const ledger = Ledger.open(file, { now: () => clock++ })
    await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: 'a', updatedAt: 1_700_000_001_000n }), 'gossip')
    await ledger.recordReceipt(await countersigned(bob, carol, { sessionId: 'b', updatedAt: 1_700_000_002_000n }), 'gossip')
    await ledger.recordReceipt(await countersigned(carol, alice, { sessionId: 'c', updatedAt: 1_700_000_003_000n }), 'gossip')
    expect(ledger.receipts().map(e => e.receipt.sessionId)).toEqual(['c', 'b', 'a'])
    expect(ledger.receipts({ limit: 1 }).map(e => e.receipt.sessionId)).toEqual(['c'])
    expect(ledger.receipts({ peer: peerIdFromPrivateKey(alice.key) }).map(e => e.receipt.sessionId)).toEqual(['c', 'a'])
    expect(ledger.receipts({ peer: bob.bytes, limit: 1 }).map(e => e.receipt.sessionId)).toEqual(['b'])
    await ledger.close()
  })
})

describe('balances', () => {
  it('earns for carried bytes what the consumer can pay, spends for used bytes, and grants the allowance only with a proof of work', async () => {
    const ledger = Ledger.open(file, { powDifficulty: 8, allowanceMicro: 5_000_000n })
    ledger.recordPow(alice.bytes, await solvePow(alice.bytes, 8), 8)
    const price = 3_000_000n
    // alice pays bob from her allowance
    await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: 's1', bytesUp: 0n, bytesDown: 1_000_000_000n, pricePerGb: price }), 'gossip')
    await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: 's2', bytesUp: 1n, bytesDown: 0n, pricePerGb: price }), 'gossip')
    // bob, with no proof of work, pays alice from what he earned
    await ledger.recordReceipt(await countersigned(bob, alice, { sessionId: 's3', bytesUp: 500_000_000n, bytesDown: 0n, pricePerGb: 1_000_000n }), 'gossip')

    const a = ledger.balance(alice.bytes)
    // s2: 1 byte at 3 credits/GB rounds up to one micro-credit
    expect(a.spentMicro).toBe(3_000_000n + 1n)
    expect(a.earnedMicro).toBe(500_000n)
    expect(a.unpaidMicro).toBe(0n)
    expect(a.allowanceMicro).toBe(5_000_000n)
    expect(a.balanceMicro).toBe(5_000_000n + 500_000n - 3_000_001n)
    expect(a.bytesUsed).toBe(1_000_000_001n)
    expect(a.bytesCarried).toBe(500_000_000n)
    expect(ledger.balance(bob.bytes)).toMatchObject({ earnedMicro: 3_000_001n, unpaidMicro: 0n, spentMicro: 500_000n, allowanceMicro: 0n, balanceMicro: 2_500_001n })

    // carol has nothing: alice carries for her unpaid, and carol owes it
    await ledger.recordReceipt(await countersigned(carol, alice, { sessionId: 's4', bytesUp: 0n, bytesDown: 2_000_000_000n, pricePerGb: 1_000_000n }), 'gossip')
    expect(ledger.balance(alice.bytes)).toMatchObject({ earnedMicro: 500_000n, unpaidMicro: 2_000_000n, bytesCarried: 2_500_000_000n })
    expect(ledger.balance(carol.bytes)).toMatchObject({ spentMicro: 2_000_000n, balanceMicro: -2_000_000n })

    // alice pays more than she has: bob is credited her balance (2.499999), the rest is unpaid
    await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: 's5', bytesUp: 0n, bytesDown: 3_000_000_000n, pricePerGb: 1_000_000n }), 'gossip')
    expect(ledger.balance(bob.bytes)).toMatchObject({ earnedMicro: 3_000_001n + 2_499_999n, unpaidMicro: 500_001n })
    expect(ledger.balance(alice.bytes).balanceMicro).toBe(-500_001n)

    // carol's proof of work, once known, pays what she owes alice (2 credits); alice's balance grows
    // from -0.500001 and pays what she owes bob in turn (0.500001): debts settle down the chain
    ledger.recordPow(carol.bytes, await solvePow(carol.bytes, 8), 8)
    expect(ledger.balance(carol.bytes)).toMatchObject({ allowanceMicro: 5_000_000n, balanceMicro: 3_000_000n })
    expect(ledger.balance(alice.bytes)).toMatchObject({ earnedMicro: 500_000n + 2_000_000n, unpaidMicro: 0n, balanceMicro: 2_000_000n - 500_001n })
    expect(ledger.balance(bob.bytes)).toMatchObject({ earnedMicro: 3_000_001n + 3_000_000n, unpaidMicro: 0n })
    // her later receipt is paid from what is left (3 of 4 credits)
    await ledger.recordReceipt(await countersigned(carol, alice, { sessionId: 's4', bytesUp: 0n, bytesDown: 6_000_000_000n, pricePerGb: 1_000_000n, seq: 2n }), 'gossip')
    expect(ledger.balance(alice.bytes)).toMatchObject({ earnedMicro: 500_000n + 2_000_000n + 3_000_000n, unpaidMicro: 1_000_000n })
    // and when carol earns, alice gets the rest
    await ledger.recordReceipt(await countersigned(dave, carol, { sessionId: 's6', bytesUp: 0n, bytesDown: 10_000_000_000n, pricePerGb: 1_000_000n }), 'gossip')
    expect(ledger.balance(carol.bytes).earnedMicro).toBe(0n) // dave has nothing to pay with
    ledger.recordPow(dave.bytes, await solvePow(dave.bytes, 8), 8)
    expect(ledger.balance(carol.bytes)).toMatchObject({ earnedMicro: 5_000_000n, unpaidMicro: 5_000_000n, balanceMicro: 5_000_000n - 1_000_000n })
    expect(ledger.balance(alice.bytes)).toMatchObject({ earnedMicro: 6_500_000n, unpaidMicro: 0n })
    expect(ledger.balance(dave.bytes).balanceMicro).toBe(5_000_000n - 10_000_000n)
    const [erin] = await parties(1)
    expect(ledger.balance(erin.bytes)).toEqual({ earnedMicro: 0n, unpaidMicro: 0n, spentMicro: 0n, allowanceMicro: 0n, balanceMicro: 0n, bytesCarried: 0n, bytesUsed: 0n })
    await ledger.close()
  })

  it('pays a debt that a step budget left over at the next receipt of the debtor: many small older debts do not shed it', async () => {
    const ledger = Ledger.open(':memory:', { powDifficulty: 4, allowanceMicro: 5_000_000n })
    const [c, e, f, ...sybils] = await parties(3 + 70)
    // 70 debts of a micro-credit each to throw-away keys, then 3 credits to e, all before c shows its proof
    for (const [i, y] of sybils.entries()) await ledger.recordReceipt(await countersigned(c, y, { sessionId: `y${i}`, bytesUp: 0n, bytesDown: 1_000n, pricePerGb: 1_000_000n }), 'gossip')
    await ledger.recordReceipt(await countersigned(c, e, { sessionId: 'e', bytesUp: 0n, bytesDown: 3_000_000_000n, pricePerGb: 1_000_000n }), 'gossip')
    expect(ledger.balance(e.bytes)).toMatchObject({ earnedMicro: 0n, unpaidMicro: 3_000_000n })
    // the proof's payments stop at the step budget (64), before e's turn
    ledger.recordPow(c.bytes, await solvePow(c.bytes, 4), 4)
    expect(ledger.balance(e.bytes).earnedMicro).toBe(0n)
    // c's next receipt settles the rest, oldest first, before anything else
    await ledger.recordReceipt(await countersigned(c, f, { sessionId: 'f', bytesUp: 0n, bytesDown: 1_000n, pricePerGb: 1_000_000n }), 'gossip')
    expect(ledger.balance(e.bytes)).toMatchObject({ earnedMicro: 3_000_000n, unpaidMicro: 0n })
    for (const y of sybils) expect(ledger.balance(y.bytes)).toMatchObject({ earnedMicro: 1n, unpaidMicro: 0n })
    // c was charged for all of it: 5 credits - 3 - 70 micro - 1 micro (f, paid)
    expect(ledger.balance(c.bytes).balanceMicro).toBe(5_000_000n - 3_000_000n - 71n)
    await ledger.close()
  })

  it('pays what a creditor deep in a chain owes even if it goes quiet: the next receipt anyone stores settles it', async () => {
    const ledger = Ledger.open(':memory:', { powDifficulty: 4, allowanceMicro: 5_000_000n })
    const [x, y, e, p, q, ...sybils] = await parties(5 + 63)
    const buy = async (from: Party, to: Party, sessionId: string, bytes: bigint): Promise<void> => {
      await ledger.recordReceipt(await countersigned(from, to, { sessionId, bytesUp: 0n, bytesDown: bytes, pricePerGb: 1_000_000n }), 'gossip')
    }
    await buy(y, e, 'ye', 100_000n) // y owes e 100 micro
    for (const [i, z] of sybils.entries()) await buy(x, z, `xz${i}`, 1_000n) // x owes 63 keys a micro each
    await buy(x, y, 'xy', 1_000_000n) // and y 1000 micro
    // x's proof pays its 63 small debts and y's 1000 (64 payments): y's own debt to e is left for later
    ledger.recordPow(x.bytes, await solvePow(x.bytes, 4), 4)
    expect(ledger.balance(y.bytes)).toMatchObject({ earnedMicro: 1_000n, balanceMicro: 900n })
    expect(ledger.balance(e.bytes)).toMatchObject({ earnedMicro: 0n, unpaidMicro: 100n })
    // y goes quiet; a receipt between two others settles it
    await buy(p, q, 'pq', 1_000n)
    expect(ledger.balance(e.bytes)).toMatchObject({ earnedMicro: 100n, unpaidMicro: 0n })
    expect((ledger as any).database.prepare('SELECT count(*) AS n FROM unsettled').get().n).toBe(0)
    await ledger.close()
  })

  it('a ring of keys signing each other receipts mints no credit: the ring holds at most its allowances', async () => {
    const ledger = Ledger.open(file, { powDifficulty: 8, allowanceMicro: 1_000_000n })
    // one owner's keys: only the first solved a proof of work
    const [m1, m2, m3] = [alice, bob, carol]
    ledger.recordPow(m1.bytes, await solvePow(m1.bytes, 8), 8)
    const ring = [m1, m2, m3]
    for (let round = 1; round <= 5; round++) {
      for (const [i, payer] of ring.entries()) {
        const payee = ring[(i + 1) % ring.length]
        // a terabyte a round, cumulative, each pair's one session
        await ledger.recordReceipt(await countersigned(payer, payee, { sessionId: 'ring', bytesUp: 0n, bytesDown: BigInt(round) * 10n ** 12n, seq: BigInt(round), pricePerGb: 1_000_000n }), 'gossip')
      }
    }
    const balances = ring.map(p => ledger.balance(p.bytes))
    // 5 TB passed round the ring at 1 credit/GB: it holds 1 credit, m1's allowance, however it is spread
    expect(balances.reduce((sum, b) => sum + (b.balanceMicro > 0n ? b.balanceMicro : 0n), 0n)).toBeLessThanOrEqual(1_000_000n)
    for (const b of balances) expect(b.spentMicro).toBe(5_000_000_000n)
    // and what was carried unpaid is on record
    expect(balances.reduce((sum, b) => sum + b.unpaidMicro, 0n)).toBeGreaterThan(14_000_000_000n)

    // with no proof of work among them, no one has anything to spend: the first terabyte is unpaid, and
    // the second, the other way, cancels the debt it left (as if each had paid the other), back to 0
    const fresh = Ledger.open(':memory:', { powDifficulty: 8 })
    await fresh.recordReceipt(await countersigned(m2, m3, { sessionId: 'x', bytesUp: 0n, bytesDown: 10n ** 12n, pricePerGb: 1_000_000n }), 'gossip')
    expect(fresh.balance(m3.bytes)).toMatchObject({ earnedMicro: 0n, unpaidMicro: 1_000_000_000n })
    await fresh.recordReceipt(await countersigned(m3, m2, { sessionId: 'x', bytesUp: 0n, bytesDown: 3n * 10n ** 12n, pricePerGb: 1_000_000n }), 'gossip')
    expect(fresh.balance(m2.bytes)).toMatchObject({ earnedMicro: 1_000_000_000n, unpaidMicro: 2_000_000_000n, balanceMicro: 0n })
    expect(fresh.balance(m3.bytes)).toMatchObject({ earnedMicro: 1_000_000_000n, unpaidMicro: 0n, balanceMicro: -2_000_000_000n })
    const debts = (fresh as any).database.prepare('SELECT consumer, amount_micro FROM debts').all()
    expect(debts).toEqual([{ consumer: Uint8Array.from(m3.bytes), amount_micro: '2000000000' }])
    fresh.close()
    await ledger.close()
  })

  it('never lets a weaker proof replace a stronger one that another connection recorded', async () => {
    const mine = Ledger.open(file, { powDifficulty: 8 })
    const weak = await solvePow(alice.bytes, 4)
    const strong = await solvePow(alice.bytes, 10)
    mine.recordPow(alice.bytes, weak, 4)
    expect(mine.pow(alice.bytes)).toEqual({ nonce: weak, difficulty: 4 })
    // another process writes the stronger proof; ours still has the weak one cached
    const other = Ledger.open(file, { powDifficulty: 8 })
    other.recordPow(alice.bytes, strong, 10)
    await other.close()
    mine.recordPow(alice.bytes, await solvePow(alice.bytes, 6), 6)
    expect(mine.pow(alice.bytes)).toEqual({ nonce: strong, difficulty: 10 })
    expect(mine.balance(alice.bytes).allowanceMicro).toBeGreaterThan(0n)
    mine.close()
  })

  it('rejects an invalid proof of work and ignores a weaker one', async () => {
    const ledger = Ledger.open(file, { powDifficulty: 8 })
    const err = ledgerError(() => { ledger.recordPow(bob.bytes, 0n, 200) })
    expect(err.name).toBe('LedgerError')
    expect(err.code).toBe(LedgerErrorCode.INVALID_POW)
    const strong = await solvePow(bob.bytes, 10)
    ledger.recordPow(bob.bytes, strong, 10)
    ledger.recordPow(bob.bytes, await solvePow(bob.bytes, 4), 4)
    expect(ledger.pow(bob.bytes)).toEqual({ nonce: strong, difficulty: 10 })
    // a proof below the ledger's difficulty earns nothing
    ledger.recordPow(carol.bytes, await solvePow(carol.bytes, 4), 4)
    expect(ledger.balance(carol.bytes).allowanceMicro).toBe(0n)
    await ledger.close()
  })
})

describe('persistence', () => {
  it('keeps receipts, proofs of work and balances across close and reopen', async () => {
    const self = peerIdFromPrivateKey(alice.key)
    let ledger = Ledger.open(file, { selfPeerId: self, powDifficulty: 8 })
    const r = await countersigned(alice, bob, { bytesDown: 123_456_789n })
    await ledger.recordReceipt(r, 'own')
    const nonce = await solvePow(alice.bytes, 8)
    ledger.recordPow(alice.bytes, nonce, 8)
    const before = ledger.balance()
    await ledger.close()

    ledger = Ledger.open(file, { selfPeerId: self, powDifficulty: 8 })
    expect(ledger.get(receiptId(r))!.receipt).toEqual(r)
    expect(ledger.balance()).toEqual(before)
    expect(ledger.pow(alice.bytes)).toEqual({ nonce, difficulty: 8 })
    expect(await ledger.recordReceipt(r, 'gossip')).toBe('duplicate')
    const db = new DatabaseSync(file)
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: LEDGER_SCHEMA_VERSION })
    expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' })
    db.close()
    await ledger.close()
  })

  it('loses no receipt whose recordReceipt() returned when the process is killed', async () => {
    // kill while it is writing, without warning
    const { acknowledged, signal } = await writeUntilKilled(file, 40n)
    expect(signal).toBe('SIGKILL')
    const ledger = Ledger.open(file)
    for (const [id, seq] of acknowledged) expect(ledger.get(id)!.receipt.seq).toBeGreaterThanOrEqual(seq)
    await ledger.close()
  })

  it('throws LedgerError CLOSED after close', async () => {
    const ledger = Ledger.open(file)
    await ledger.close()
    await ledger.close()
    expect(ledgerError(() => ledger.balance(alice.bytes)).code).toBe(LedgerErrorCode.CLOSED)
    expect((await caught(async () => ledger.recordReceipt(await countersigned(alice, bob), 'gossip'))).code).toBe(LedgerErrorCode.CLOSED)
  })
})

describe('refusing files that are not our ledger', () => {
  function expectRefused (code: string): void {
    const err = ledgerError(() => Ledger.open(file))
    expect(err.name).toBe('LedgerError')
    expect(err.code).toBe(code)
    expect(err.file).toBe(file)
    expect(err.message).toContain(file)
  }

  it('a file that is not SQLite', () => {
    writeFileSync(file, 'identity = "not a database"\n'.repeat(20))
    const before = readFileSync(file)
    expectRefused(LedgerErrorCode.NOT_SQLITE)
    expect(readFileSync(file)).toEqual(before)
  })

  it('a corrupt ledger', async () => {
    const ledger = Ledger.open(file)
    for (let i = 0; i < 200; i++) {
      await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: `session-${i}` }), 'gossip')
    }
    await ledger.close()
    const bytes = readFileSync(file)
    // damage every page after the first (schema and header stay readable)
    for (let i = 4096; i < bytes.length; i += 97) bytes[i] ^= 0x5a
    writeFileSync(file, bytes)
    expectRefused(LedgerErrorCode.CORRUPT)
  })

  it('a damaged header', async () => {
    Ledger.open(file).close()
    const bytes = readFileSync(file)
    bytes.fill(0x41, 16, 100)
    writeFileSync(file, bytes)
    const err = ledgerError(() => Ledger.open(file))
    expect(err.name).toBe('LedgerError')
    expect([LedgerErrorCode.CORRUPT, LedgerErrorCode.NOT_SQLITE]).toContain(err.code)
    expect(err.message).toContain(file)
  })

  it("another application's SQLite database, left untouched", () => {
    const db = new DatabaseSync(file)
    db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes (text) VALUES ('keep me')")
    db.close()
    const before = readFileSync(file)
    expectRefused(LedgerErrorCode.FOREIGN)
    expect(readFileSync(file)).toEqual(before)
  })

  it('a SQLite database with a meta table of another app', () => {
    const db = new DatabaseSync(file)
    db.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('app', 'something-else'); PRAGMA user_version = 1")
    db.close()
    expectRefused(LedgerErrorCode.FOREIGN)
  })

  it('a ledger from a newer spareband', () => {
    Ledger.open(file).close()
    const db = new DatabaseSync(file)
    db.exec(`PRAGMA user_version = ${LEDGER_SCHEMA_VERSION + 1}`)
    db.close()
    expectRefused(LedgerErrorCode.TOO_NEW)
  })

  it("another identity's ledger", () => {
    Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key) }).close()
    const err = ledgerError(() => Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(bob.key) }))
    expect(err.code).toBe(LedgerErrorCode.WRONG_IDENTITY)
    expect(err.message).toBe(`ledger ${file} belongs to peer ${peerIdFromPrivateKey(alice.key).toString()}, not to ${peerIdFromPrivateKey(bob.key).toString()}. Use the identity.key that goes with it; or, to start over with this identity, move ${file} aside and start again, or choose another --data-dir (spareband never resets a ledger)`)
    // the rightful owner still opens it
    Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key) }).close()
  })

  it('an empty file is a new ledger', async () => {
    writeFileSync(file, '')
    const ledger = Ledger.open(file)
    expect(ledger.size).toBe(0)
    await ledger.close()
  })
})

describe('listing order and damaged rows', () => {
  it('lists newest received first: a far-future updated_at in gossip does not push own receipts out', async () => {
    let clock = 1_000
    const ledger = Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key), now: () => clock })
    for (let i = 0; i < 5; i++) await ledger.recordReceipt(await countersigned(bob, carol, { sessionId: `junk-${i}`, startedAt: 1n << 61n, updatedAt: 1n << 62n }), 'gossip')
    clock = 2_000
    await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: 'mine' }), 'own')
    const top = ledger.receipts({ limit: 1 })
    expect(top.map(r => r.receipt.sessionId)).toEqual(['mine'])
    expect(top[0].source).toBe('own')
    await ledger.close()
  })

  it('upgrades a ledger of schema 1 in place, receipts kept', async () => {
    const r = await countersigned(alice, bob, { sessionId: 'old' })
    let ledger = Ledger.open(file)
    await ledger.recordReceipt(r, 'own')
    await ledger.close()
    // back to what schema 1 was: the updated_at index, user_version 1
    let db = new DatabaseSync(file)
    // what schema 2 changed, then what schema 3 did: totals earned in full, no unpaid column; and what came after
    db.exec("DROP INDEX receipts_received_at; CREATE INDEX receipts_updated_at ON receipts (updated_at); ALTER TABLE totals DROP COLUMN unpaid_micro; ALTER TABLE totals DROP COLUMN owed_micro; DROP TABLE debts; DROP TABLE unsettled; DROP INDEX receipts_gossip_received_at; DROP TABLE reputation; UPDATE totals SET earned_micro = '77' WHERE earned_micro = '0' AND spent_micro = '0'; PRAGMA user_version = 1")
    db.close()
    ledger = Ledger.open(file)
    expect(ledger.get(receiptId(r))!.receipt).toEqual(r)
    // totals written before are kept as they were
    expect(ledger.balance(bob.bytes)).toMatchObject({ earnedMicro: 77n, unpaidMicro: 0n })
    await ledger.close()
    db = new DatabaseSync(file)
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: LEDGER_SCHEMA_VERSION })
    const indexes = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'receipts'").all() as Array<{ name: string }>).map(i => i.name)
    expect(indexes).toContain('receipts_received_at')
    expect(indexes).toContain('receipts_gossip_received_at')
    expect(indexes).not.toContain('receipts_updated_at')
    // and the reputation reports' table of schema 9
    expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'reputation'").get()).toEqual({ name: 'reputation' })
    db.close()
  })

  it('names the file and the row when a stored receipt no longer decodes', async () => {
    const r = await countersigned(alice, bob, { sessionId: 'damaged' })
    let ledger = Ledger.open(file)
    await ledger.recordReceipt(r, 'own')
    await ledger.close()
    const db = new DatabaseSync(file)
    // one byte of the stored encoding changed: SQLite's own check cannot see it
    const { encoded } = db.prepare('SELECT encoded FROM receipts').get() as { encoded: Uint8Array }
    const bad = Uint8Array.from(encoded)
    bad[0] ^= 0x08
    db.prepare('UPDATE receipts SET encoded = ?').run(bad)
    db.close()
    ledger = Ledger.open(file)
    const err = await caught(() => ledger.receipts())
    expect(err.name).toBe('LedgerError')
    expect(err.code).toBe(LedgerErrorCode.CORRUPT)
    expect(err.message).toContain(file)
    expect(err.message).toContain(receiptId(r))
    await ledger.close()
  })
})
