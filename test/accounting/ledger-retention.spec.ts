/**
 * Retention of third parties' sessions (Ledger.pruneGossip): what is
 * pruned and what stays, that no balance moves, and that a pruned
 * session's later receipts are not credited a second time. Real ledger
 * files in temporary directories, with an injected clock.
 */
import { DatabaseSync } from 'node:sqlite'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { solvePow } from '../../src/accounting/credits.ts'
import { ReceiptErrorCode } from '../../src/accounting/errors.ts'
import { verifyExport } from '../../src/accounting/export.ts'
import { LEDGER_SCHEMA_VERSION, Ledger } from '../../src/accounting/ledger.ts'
import { receiptId } from '../../src/accounting/receipts.ts'
import { receiptsReport } from '../../src/node/accounting-report.ts'
import { ledgerFilePerTest } from '../utils/ledger-file.ts'
import { caught, countersigned, parties } from './fixtures.ts'
import type { Balance, LedgerInit } from '../../src/accounting/ledger.ts'
import type { ReceiptsExport } from '../../src/node/accounting-report.ts'
import type { CountersignedReceipt } from '../../src/accounting/receipts.ts'
import type { Party } from './fixtures.ts'

const DAY = 86_400_000
const RETENTION = 30 * DAY
/** When the tests begin, on the ledger's clock. */
const T0 = 1_800_000_000_000
const POW_BITS = 4

/** alice is this node; the others are third parties to it, but for bob where alice deals with him. */
let alice: Party
let bob: Party
let carol: Party
let dave: Party
let clock: number
const temp = ledgerFilePerTest('spareband-retention-')

beforeAll(async () => {
  [alice, bob, carol, dave] = await parties(4)
})

beforeEach(() => { clock = T0 })

function open (init: LedgerInit = {}): Ledger {
  return Ledger.open(temp.file, { selfPeerId: peerIdFromPrivateKey(alice.key), now: () => clock, gossipRetentionMs: RETENTION, powDifficulty: POW_BITS, allowanceMicro: 10n ** 12n, ...init })
}

/** Receipt `seq` of a session: 1 MB more each time, dated a minute per seq after its start. */
async function receipt (consumer: Party, exit: Party, sessionId: string, seq: bigint, startedAt = T0): Promise<CountersignedReceipt> {
  const start = BigInt(startedAt)
  return countersigned(consumer, exit, { sessionId, seq, startedAt: start, updatedAt: start + seq * 60_000n, bytesUp: seq * 1_000n, bytesDown: seq * 1_000_000n })
}

function balances (ledger: Ledger): Balance[] {
  return [alice, bob, carol, dave].map(p => ledger.balance(p.bytes))
}

/** Records `receipts` of third parties now, then moves the clock past the retention and prunes (with `pruner`, another connection, if given): one session goes. */
async function recordAndPrune (ledger: Ledger, receipts: CountersignedReceipt[], pruner = ledger): Promise<void> {
  for (const r of receipts) await ledger.recordReceipt(r, 'gossip')
  clock += 31 * DAY
  expect(pruner.pruneGossip()).toBe(1)
}

/** `r` is refused as of a session that may have been pruned, and no balance moves. */
async function expectExpired (ledger: Ledger, r: CountersignedReceipt, options?: { verified?: boolean }): Promise<void> {
  const before = balances(ledger)
  expect((await caught(async () => ledger.recordReceipt(r, 'gossip', options))).code).toBe(ReceiptErrorCode.EXPIRED)
  expect(balances(ledger)).toEqual(before)
}

describe('pruning third parties\' sessions', () => {
  it('deletes those whose last receipt is past the retention, and keeps this node\'s, newer ones and every balance', async () => {
    let ledger = open()
    // carol pays what she is charged; bob, with no proof of work, runs up a debt to carol
    ledger.recordPow(carol.bytes, await solvePow(carol.bytes, POW_BITS), POW_BITS)
    await ledger.recordReceipt(await receipt(alice, bob, 'own', 1n), 'own')
    // a session of this node that reached it over gossip first: still this node's
    await ledger.recordReceipt(await receipt(bob, alice, 'mine-by-gossip', 1n), 'gossip')
    const old = [await receipt(carol, dave, 'old-1', 2n), await receipt(carol, dave, 'old-2', 1n), await receipt(bob, carol, 'old-3', 3n)]
    for (const r of old) await ledger.recordReceipt(r, 'gossip')
    clock = T0 + 20 * DAY
    const recent = await receipt(dave, carol, 'recent', 1n, clock)
    await ledger.recordReceipt(recent, 'gossip')
    clock = T0 + 31 * DAY
    const before = balances(ledger)
    expect(before[1].unpaidMicro + before[2].unpaidMicro).toBeGreaterThan(0n)

    expect(ledger.pruneGossip(1_000)).toBe(3)
    expect(ledger.pruneGossip(1_000)).toBe(0)
    expect(ledger.receipts().map(s => s.receipt.sessionId).sort()).toEqual(['mine-by-gossip', 'own', 'recent'])
    for (const r of old) expect(ledger.get(receiptId(r))).toBeUndefined()
    expect(balances(ledger)).toEqual(before)
    await ledger.close()

    // and so it stays
    ledger = open()
    expect(ledger.size).toBe(3)
    expect(balances(ledger)).toEqual(before)
    await ledger.close()
  })

  it('refuses a pruned session\'s later receipt, a copy of its last one and an older one, and credits none of them again', async () => {
    const ledger = open()
    const [r1, r2, r3] = [await receipt(carol, dave, 's', 1n), await receipt(carol, dave, 's', 2n), await receipt(carol, dave, 's', 3n)]
    await recordAndPrune(ledger, [r1, r2])
    for (const r of [r2, r3, r1]) await expectExpired(ledger, r)
    expect(ledger.size).toBe(0)
    await ledger.close()
  })

  it('counts a session still in use across the horizon by its growth, takes new sessions, and refuses an unknown one started before a pruned one', async () => {
    const ledger = open()
    await ledger.recordReceipt(await receipt(carol, dave, 'long', 1n), 'gossip')
    await ledger.recordReceipt(await receipt(carol, dave, 'short', 1n), 'gossip')
    clock = T0 + 20 * DAY
    // its exit gossips it while it carries: the row is renewed
    await ledger.recordReceipt(await receipt(carol, dave, 'long', 2n), 'gossip')
    clock = T0 + 31 * DAY
    expect(ledger.pruneGossip()).toBe(1)
    expect(ledger.get(receiptId(await receipt(carol, dave, 'long', 1n)))).toBeDefined()

    const carried = ledger.balance(dave.bytes).bytesCarried
    const r3 = await receipt(carol, dave, 'long', 3n)
    expect(await ledger.recordReceipt(r3, 'gossip')).toBe('updated')
    expect(ledger.balance(dave.bytes).bytesCarried - carried).toBe(1_001_000n)

    expect(await ledger.recordReceipt(await receipt(carol, dave, 'new', 1n, clock), 'gossip')).toBe('inserted')
    // never seen, but it could have been: the price of not keeping every session
    await expectExpired(ledger, await receipt(dave, carol, 'unseen', 1n, T0 - 1))
    await ledger.close()
  })

  it('never prunes nor refuses this node\'s own sessions, however old', async () => {
    const ledger = open()
    await ledger.recordReceipt(await receipt(alice, bob, 'own', 1n), 'own')
    await recordAndPrune(ledger, [await receipt(carol, dave, 'theirs', 1n)])
    const used = ledger.balance().bytesUsed
    expect(await ledger.recordReceipt(await receipt(alice, bob, 'own', 2n), 'own')).toBe('updated')
    expect(ledger.balance().bytesUsed - used).toBe(1_001_000n)
    // older than what was pruned, but ours: not one that was pruned
    expect(await ledger.recordReceipt(await receipt(alice, dave, 'own-late', 1n, T0 - DAY), 'own')).toBe('inserted')
    expect(await ledger.recordReceipt(await receipt(dave, alice, 'ours-by-gossip', 1n, T0 - DAY), 'gossip')).toBe('inserted')
    await ledger.close()
  })

  it('keeps a session dated in the future until its start is past the horizon: one made-up date cannot shut out every new session', async () => {
    const ledger = open()
    // the ledger takes it from any caller (gossip refuses dates over an hour ahead before it gets here)
    await ledger.recordReceipt(await receipt(carol, dave, 'far', 1n, T0 + 1_000 * DAY), 'gossip')
    await recordAndPrune(ledger, [await receipt(carol, dave, 'old', 1n)])
    expect(await ledger.recordReceipt(await receipt(dave, carol, 'new', 1n, clock), 'gossip')).toBe('inserted')
    await ledger.close()
  })

  it('keeps every session with a retention of 0', async () => {
    const ledger = open({ gossipRetentionMs: 0 })
    await ledger.recordReceipt(await receipt(carol, dave, 'theirs', 1n), 'gossip')
    clock = T0 + 4_000 * DAY
    expect(ledger.pruneGossip()).toBe(0)
    expect(ledger.size).toBe(1)
    await ledger.close()
  })

  it('refuses a negative or endless retention before it opens the file', () => {
    for (const gossipRetentionMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => open({ gossipRetentionMs })).toThrow(RangeError)
    }
  })
})

describe('what the ledger holds in memory after a prune', () => {
  it('a session the ledger wrote last is not taken back from memory: a receipt the caller verified is refused too', async () => {
    const ledger = open()
    await recordAndPrune(ledger, [await receipt(carol, dave, 's', 1n)])
    await expectExpired(ledger, await receipt(carol, dave, 's', 2n), { verified: true })
    await ledger.close()
  })

  it('another connection\'s prune is seen: a pruned session is refused, not inserted again', async () => {
    const a = open()
    const b = open()
    await recordAndPrune(a, [await receipt(carol, dave, 's', 1n)], b)
    await expectExpired(a, await receipt(carol, dave, 's', 2n))
    await a.close()
    await b.close()
  })
})

describe('pruning on its own', () => {
  it('prunes a backlog a batch at a time once opened, until none is left, and stops at close', async () => {
    let ledger = open()
    await ledger.recordReceipt(await receipt(alice, bob, 'own', 1n), 'own')
    // more than one batch
    for (let i = 0; i < 40; i++) await ledger.recordReceipt(await receipt(carol, dave, `s-${i}`, 1n), 'gossip')
    await ledger.close()
    clock = T0 + 31 * DAY
    ledger = open()
    const deadline = Date.now() + 5_000
    while (ledger.size > 1 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    expect(ledger.size).toBe(1)
    await ledger.close()
    // no pass runs on a closed ledger (it would throw CLOSED from a timer)
    await new Promise(resolve => setTimeout(resolve, 100))
  })

  it('an export begun before a prune leaves out the sessions pruned meanwhile, and verifies', async () => {
    const ledger = open()
    await ledger.recordReceipt(await receipt(alice, bob, 'own', 2n), 'own')
    for (let i = 0; i < 3; i++) await ledger.recordReceipt(await receipt(carol, dave, `s-${i}`, 1n), 'gossip')
    clock = T0 + 31 * DAY
    const report = receiptsReport(ledger, { export: 'json' }) as ReceiptsExport
    expect(ledger.pruneGossip()).toBe(3)
    let text = ''
    for await (const chunk of report.chunks) text += chunk
    const verified = await verifyExport(text)
    expect(verified.ok).toBe(true)
    expect(verified.ok && verified.totals.sessions).toBe(1)
    await ledger.close()
  })

  it('upgrades a ledger of schema 6: the index pruning walks is added, receipts kept', async () => {
    let ledger = open()
    const r = await receipt(carol, dave, 's', 1n)
    await ledger.recordReceipt(r, 'gossip')
    await ledger.close()
    let db = new DatabaseSync(temp.file)
    db.exec('DROP INDEX receipts_gossip_received_at; DROP TABLE reputation; PRAGMA user_version = 6')
    db.close()
    ledger = open()
    expect(ledger.get(receiptId(r))).toBeDefined()
    clock = T0 + 31 * DAY
    expect(ledger.pruneGossip()).toBe(1)
    await ledger.close()
    db = new DatabaseSync(temp.file)
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: LEDGER_SCHEMA_VERSION })
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'receipts_gossip_received_at'").get()).toBeDefined()
    db.close()
  })
})
