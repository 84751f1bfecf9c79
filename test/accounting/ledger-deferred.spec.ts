/**
 * Ledger.recordLater(): the consumer's batched writes of countersigned
 * receipts. The outcome of each receipt and the file at the end must be
 * exactly those of recording the same receipts one by one.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import fc from 'fast-check'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { LedgerErrorCode, ReceiptError, ReceiptErrorCode } from '../../src/accounting/errors.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { countersignedAnswer, encodeReceipt, receiptId, receiptSigningBytes, signAsConsumer, verifyAndCountersign } from '../../src/accounting/receipts.ts'
import { caught, countersigned, parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { CountersignedReceipt } from '../../src/accounting/receipts.ts'

let alice: Party
let bob: Party
let carol: Party
let dir: string
const fileIn = (name: string): string => join(dir, name)

beforeAll(async () => {
  [alice, bob, carol] = await parties(3)
})

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'spareband-deferred-'))
})

afterEach(() => {
  rmSync(dir, { recursive: true, force: true, maxRetries: 5 })
})

const STARTED_AT = 1_700_000_000_000n
/** A receipt of alice's session `sessionId` with `exit`, its counters growing with seq. */
async function step (exit: Party, sessionId: string, seq: bigint, extra: { startedAt?: bigint, bytesDown?: bigint } = {}): Promise<CountersignedReceipt> {
  return countersigned(alice, exit, { sessionId, seq, bytesUp: seq * 10n, bytesDown: extra.bytesDown ?? seq * 1_000_000n, startedAt: extra.startedAt ?? STARTED_AT, updatedAt: STARTED_AT + seq * 1000n })
}

const outcome = (x: string | Error): string => x instanceof ReceiptError ? `error:${x.code}` : x instanceof Error ? `error:${x.message}` : x

function fileState (ledger: Ledger): unknown {
  return {
    receipts: ledger.receipts().map(s => [s.id, s.receipt.seq, Buffer.from(s.receipt.exitSig).toString('hex'), s.costMicro, s.source]).sort(),
    balances: [alice, bob, carol].map(p => ledger.balance(p.bytes))
  }
}

interface Delivery { pick: number, flushAfter: boolean }

function deliveries (pool: unknown[], maxLength: number): fc.Arbitrary<Delivery[]> {
  return fc.array(fc.record({ pick: fc.nat(pool.length - 1), flushAfter: fc.boolean() }), { minLength: 1, maxLength })
}

interface BothWays { expected: string[], got: string[], one: unknown, batched: unknown }

/**
 * The picked receipts recorded one by one in one in-memory ledger (with
 * their signatures checked, unless `verified`) and queued with recordLater
 * in another, flushed where marked and at the end: the outcomes of each
 * way, and the file state each ends with.
 */
async function recordBothWays (pool: CountersignedReceipt[], picks: Delivery[], verified: boolean): Promise<BothWays> {
  const self = peerIdFromPrivateKey(alice.key)
  // in memory: the same SQL, without a file and checkpointer per run
  const one = Ledger.open(':memory:', { selfPeerId: self })
  const batched = Ledger.open(':memory:', { selfPeerId: self, deferMs: 60_000 })
  try {
    const expected: string[] = []
    for (const d of picks) expected.push(outcome(await one.recordReceipt(pool[d.pick], 'own', { verified }).catch((err: Error) => err)))
    const pending: Array<Promise<string>> = []
    for (const d of picks) {
      pending.push(batched.recordLater(pool[d.pick]).then(outcome, outcome))
      if (d.flushAfter) batched.flush()
    }
    batched.flush()
    return { expected, got: await Promise.all(pending), one: fileState(one), batched: fileState(batched) }
  } finally {
    await one.close()
    await batched.close()
  }
}

describe('Ledger.recordLater', () => {
  it('ends with the same outcomes and the same file as recording one by one, however the batches fall', async () => {
    // a pool of receipts of three sessions: in order, out of order, repeated,
    // a conflicting twin (same seq, other counters) and an earlier session
    // that reused an id (other start): REPLAY
    const pool: CountersignedReceipt[] = []
    for (const [exit, id] of [[bob, 'a'], [bob, 'b'], [carol, 'a']] as const) {
      for (let seq = 1n; seq <= 4n; seq++) pool.push(await step(exit, id, seq))
      pool.push(await step(exit, id, 3n, { bytesDown: 3_000_001n }))
      pool.push(await step(exit, id, 9n, { startedAt: STARTED_AT - 60_000n }))
    }
    await fc.assert(fc.asyncProperty(deliveries(pool, 30), async picks => {
      const r = await recordBothWays(pool, picks, true)
      expect(r.got).toEqual(r.expected)
      expect(r.batched).toEqual(r.one)
    }), { numRuns: 60 })
  })

  it('writes a batch in one transaction with one row write per session', async () => {
    const ledger = Ledger.open(fileIn('l.db'), { selfPeerId: peerIdFromPrivateKey(alice.key), deferMs: 60_000 })
    const changes = (): number => Number(((ledger as any).db.prepare('SELECT total_changes() AS n').get() as { n: number }).n)
    const before = changes()
    const results = Array.from({ length: 20 }, async (_, i) => ledger.recordLater(await step(bob, 's', BigInt(i + 1))))
    // let every receipt reach the queue (signing is async), then write them
    await new Promise(resolve => setTimeout(resolve, 50))
    ledger.flush()
    expect(await Promise.all(results)).toEqual(['inserted', ...Array(19).fill('updated')])
    // the receipt row, the totals of consumer and exit, and what alice (no proof of work) owes bob: 4 rows, not 80
    expect(changes() - before).toBe(4)
    expect(ledger.get(receiptId(await step(bob, 's', 1n)))!.receipt.seq).toBe(20n)
    expect(ledger.balance().bytesUsed).toBe(20n * 10n + 20n * 1_000_000n)
    await ledger.close()
  })

  it('is read back at once, and reaches the file within deferMs or at close', async () => {
    const file = fileIn('l.db')
    const ledger = Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key), deferMs: 200 })
    const other = new DatabaseSync(file, { readOnly: true })
    const rowsInFile = (): number => Number((other.prepare('SELECT count(*) AS n FROM receipts').get() as { n: number }).n)
    const r = await step(bob, 'x', 1n)
    const written = ledger.recordLater(r)
    expect(rowsInFile()).toBe(0)
    // a read writes the queue first: this node's own figures are never behind
    expect(ledger.balance().bytesUsed).toBe(r.bytesUp + r.bytesDown)
    expect(await written).toBe('inserted')
    expect(rowsInFile()).toBe(1)
    // without a read: the timer writes it
    const later = ledger.recordLater(await step(bob, 'y', 1n))
    expect(rowsInFile()).toBe(1)
    expect(await later).toBe('inserted')
    expect(rowsInFile()).toBe(2)
    // close writes what is queued
    const last = ledger.recordLater(await step(carol, 'z', 1n))
    await ledger.close()
    expect(await last).toBe('inserted')
    expect(rowsInFile()).toBe(3)
    await other.close()
  })

  it('keeps what it was given: a caller changing its object after queueing it changes nothing', async () => {
    const ledger = Ledger.open(fileIn('l.db'), { selfPeerId: peerIdFromPrivateKey(alice.key), deferMs: 60_000 })
    const mine = { ...await step(bob, 's', 1n) }
    const written = ledger.recordLater(mine)
    mine.bytesDown = 999n
    ledger.flush()
    expect(await written).toBe('inserted')
    expect(ledger.get(receiptId(mine))!.receipt.bytesDown).toBe(1_000_000n)
    await ledger.close()
  })

  it('a batch that cannot be written rejects every receipt in it, and they are written with the next batch', async () => {
    const ledger = Ledger.open(fileIn('l.db'), { selfPeerId: peerIdFromPrivateKey(alice.key), deferMs: 60_000 })
    const db = (ledger as any).database as DatabaseSync
    const queued = [ledger.recordLater(await step(bob, 'a', 1n)), ledger.recordLater(await step(carol, 'b', 1n))]
    // a transaction someone left open: the batch's own cannot begin
    db.exec('BEGIN')
    ledger.flush()
    for (const q of queued) await expect(q).rejects.toThrow()
    db.exec('COMMIT')
    const next = ledger.recordLater(await step(bob, 'a', 2n))
    ledger.flush()
    // a's first receipt went in just before it, with b's
    expect(await next).toBe('updated')
    expect(ledger.size).toBe(2)
    expect(ledger.receipts().map(r => [r.receipt.sessionId, r.receipt.seq]).sort()).toEqual([['a', 2n], ['b', 1n]])
    await ledger.close()
  })

  it("refuses a receipt that is not this node's, and any after close", async () => {
    const ledger = Ledger.open(fileIn('l.db'), { selfPeerId: peerIdFromPrivateKey(carol.key) })
    expect((await caught(async () => ledger.recordLater(await step(bob, 's', 1n)))).code).toBe(ReceiptErrorCode.WRONG_PEER)
    await ledger.close()
    const closed = Ledger.open(fileIn('m.db'), { selfPeerId: peerIdFromPrivateKey(alice.key) })
    await closed.close()
    expect((await caught(async () => closed.recordLater(await step(bob, 's', 1n)))).code).toBe(LedgerErrorCode.CLOSED)
  })
})

describe('Ledger.recordLater checks the signatures of what it writes', () => {
  /** `r` with an exit signature by someone who is not its exit: the shape of an exit that signs badly. */
  async function badlySigned (r: CountersignedReceipt): Promise<CountersignedReceipt> {
    const by = Buffer.from(r.exit).equals(carol.bytes) ? bob : carol
    return { ...r, exitSig: new Uint8Array(await by.key.sign(receiptSigningBytes(r))) }
  }
  /** One batch of `receipts`: outcomes and file state must be those of recording them one by one, signatures checked. */
  async function both (receipts: CountersignedReceipt[]): Promise<{ outcomes: string[], batched: unknown, one: unknown }> {
    const r = await recordBothWays(receipts, receipts.map((_, pick) => ({ pick, flushAfter: false })), false)
    expect(r.got).toEqual(r.expected)
    return { outcomes: r.got, batched: r.batched, one: r.one }
  }

  it('refuses a newest receipt whose exit signature fails, and writes the one before it, as recording one by one does', async () => {
    const r = await Promise.all([1n, 2n, 3n].map(async seq => step(bob, 's', seq)))
    const { outcomes, batched, one } = await both([r[0], r[1], await badlySigned(r[2])])
    expect(outcomes).toEqual(['inserted', 'updated', `error:${ReceiptErrorCode.BAD_EXIT_SIGNATURE}`])
    expect(batched).toEqual(one)
    expect((batched as any).receipts.map((x: any[]) => x[1])).toEqual([2n])
  })

  it('writes nothing when every receipt of the batch is badly signed', async () => {
    const r = await Promise.all([1n, 2n].map(async seq => badlySigned(await step(bob, 's', seq))))
    const { outcomes, batched } = await both(r)
    expect(outcomes).toEqual([`error:${ReceiptErrorCode.BAD_EXIT_SIGNATURE}`, `error:${ReceiptErrorCode.BAD_EXIT_SIGNATURE}`])
    expect((batched as any).receipts).toEqual([])
  })

  it('does not check a receipt that a newer, valid one of its batch covers: it is never written', async () => {
    const ledger = Ledger.open(':memory:', { selfPeerId: peerIdFromPrivateKey(alice.key), deferMs: 60_000 })
    const r = await Promise.all([1n, 2n, 3n].map(async seq => step(bob, 's', seq)))
    const pending = [r[0], await badlySigned(r[1]), r[2]].map(async x => ledger.recordLater(x))
    ledger.flush()
    expect(await Promise.all(pending)).toEqual(['inserted', 'updated', 'updated'])
    const stored = ledger.get(receiptId(r[2]))!.receipt
    expect(stored.seq).toBe(3n)
    expect(stored.exitSig).toEqual(r[2].exitSig)
    await ledger.close()
  })

  it('checks the consumer signature too', async () => {
    const r = await Promise.all([1n, 2n].map(async seq => step(bob, 's', seq)))
    // the exit's signature still holds: neither covers the other signature
    const forged = { ...r[1], consumerSig: new Uint8Array(await carol.key.sign(receiptSigningBytes(r[1]))) }
    const { outcomes, batched, one } = await both([r[0], forged])
    expect(outcomes).toEqual(['inserted', `error:${ReceiptErrorCode.BAD_CONSUMER_SIGNATURE}`])
    expect(batched).toEqual(one)
  })

  it('checks each session of a batch on its own: a bad one leaves the others as they are', async () => {
    const a = await Promise.all([1n, 2n, 3n].map(async seq => step(bob, 'a', seq)))
    const b = await Promise.all([1n, 2n].map(async seq => step(carol, 'b', seq)))
    const { outcomes, batched, one } = await both([a[0], b[0], a[1], await badlySigned(b[1]), a[2]])
    expect(outcomes).toEqual(['inserted', 'inserted', 'updated', `error:${ReceiptErrorCode.BAD_EXIT_SIGNATURE}`, 'updated'])
    expect(batched).toEqual(one)
    expect((batched as any).receipts.map((x: any[]) => x[1]).sort()).toEqual([1n, 3n])
  })

  it('checks every receipt when one does not advance: a bad one must not be the measure of the next', async () => {
    // one by one, the badly signed seq 5 is refused, seq 4 is written and seq 6 (fewer bytes than seq 4) regresses
    const bad = await badlySigned(await step(bob, 's', 5n, { bytesDown: 1n }))
    const valid = await step(bob, 's', 4n, { bytesDown: 100n })
    const later = await step(bob, 's', 6n, { bytesDown: 2n })
    const { outcomes, batched, one } = await both([bad, valid, later])
    expect(outcomes).toEqual([`error:${ReceiptErrorCode.BAD_EXIT_SIGNATURE}`, 'inserted', `error:${ReceiptErrorCode.REGRESSED}`])
    expect(batched).toEqual(one)
    // the same receipt twice after a badly signed copy of it: a duplicate, as one by one
    const e = await step(bob, 't', 1n)
    const again = await both([await badlySigned(e), e, e])
    expect(again.outcomes).toEqual([`error:${ReceiptErrorCode.BAD_EXIT_SIGNATURE}`, 'inserted', 'duplicate'])
  })

  it('ends with the same file as recording one by one, whatever mix of valid and badly signed receipts it is given', async () => {
    const pool: CountersignedReceipt[] = []
    for (const [exit, id] of [[bob, 'a'], [carol, 'b']] as const) {
      for (let seq = 1n; seq <= 4n; seq++) {
        const r = await step(exit, id, seq)
        pool.push(r, await badlySigned(r))
      }
      pool.push(await step(exit, id, 3n, { bytesDown: 1n }))
    }
    await fc.assert(fc.asyncProperty(deliveries(pool, 20), async picks => {
      const r = await recordBothWays(pool, picks, false)
      expect(r.batched).toEqual(r.one)
    }), { numRuns: 60 })
  })

  it("catches a bad exit signature on the consumer's answer path, which leaves it unchecked", async () => {
    const ledger = Ledger.open(':memory:', { selfPeerId: peerIdFromPrivateKey(alice.key), deferMs: 60_000 })
    const mine = await signAsConsumer({ ...await step(bob, 's', 1n), consumerSig: undefined, exitSig: undefined }, alice.key)
    const answer = encodeReceipt({ ...mine, exitSig: new Uint8Array(await carol.key.sign(receiptSigningBytes(mine))) })
    const unchecked = countersignedAnswer(answer, mine)
    const written = ledger.recordLater(unchecked)
    ledger.flush()
    expect((await caught(async () => written)).code).toBe(ReceiptErrorCode.BAD_EXIT_SIGNATURE)
    expect(ledger.size).toBe(0)
    // the honest answer to the same receipt is written
    const honest = ledger.recordLater(countersignedAnswer(encodeReceipt(verifyAndCountersign(mine, bob.key)), mine))
    ledger.flush()
    expect(await honest).toBe('inserted')
    await ledger.close()
  })
})
