/**
 * Property: whatever order valid and invalid receipts arrive in, the ledger
 * (and the in-memory tracker) end with each session's largest valid receipt,
 * and every balance is the sum over sessions of cost(that receipt).
 *
 * Invalid traffic mixed in: forgeries (third key), tampered counters, broken
 * exit signatures, self-dealing (consumer = exit), exact re-deliveries,
 * out-of-order (regressing) deliveries, and a validly signed receipt of an
 * "earlier session" that reused the session id. For the latter the model is
 * first come, first served: whichever incarnation of the session id arrives
 * first owns it, the other is rejected as REPLAY.
 *
 * And with third parties' sessions pruned at any point (the clock jumping
 * past the retention): no balance moves at a prune, and each session is
 * counted once, by the largest receipt the ledger took for it, however its
 * receipts come after it was pruned.
 */
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { costMicro, solvePow } from '../../src/accounting/credits.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { ReceiptTracker, countersign, receiptId, receiptSigningBytes } from '../../src/accounting/receipts.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { body, countersigned, parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { CountersignedReceipt, Receipt } from '../../src/accounting/receipts.ts'

const PEERS = 4
let peers: Party[]
let mallory: Party

/** Difficulty of the proofs of work here: low, the test is about the arithmetic. */
const POW_BITS = 4
const pows = new Map<Party, bigint>()

beforeAll(async () => {
  const all = await parties(PEERS + 1)
  peers = all.slice(0, PEERS)
  mallory = all[PEERS]
  for (const p of all) pows.set(p, await solvePow(p.bytes, POW_BITS))
})

interface SessionSpec {
  consumer: number
  exitOffset: number
  sessionId: string
  price: bigint
  steps: Array<{ up: bigint, down: bigint }>
  invalid: Array<'forged' | 'tampered' | 'badExitSig' | 'selfDeal' | 'otherSession' | 'replay'>
}

const sessionArb: fc.Arbitrary<SessionSpec> = fc.record({
  consumer: fc.nat(PEERS - 1),
  exitOffset: fc.integer({ min: 1, max: PEERS - 1 }),
  sessionId: fc.constantFrom('a', 'b', 'c', 'session-with-a-longer-id'),
  price: fc.constantFrom(0n, 1n, 1_000_000n, 7_777_777n),
  steps: fc.array(fc.record({ up: fc.bigInt({ min: 0n, max: 3_000_000_000n }), down: fc.bigInt({ min: 0n, max: 9_000_000_000n }) }), { minLength: 1, maxLength: 4 }),
  invalid: fc.subarray(['forged', 'tampered', 'badExitSig', 'selfDeal', 'otherSession', 'replay'] as const)
})

const scenarioArb = fc.record({
  sessions: fc.uniqueArray(sessionArb, { minLength: 1, maxLength: 4, selector: s => `${s.consumer}/${s.exitOffset}/${s.sessionId}` }),
  order: fc.array(fc.nat(), { minLength: 64, maxLength: 64 })
})

/** One delivery; `incarnation` is set on validly signed receipts (the key they may own). */
interface Delivery {
  receipt: Receipt
  key?: string
  incarnation?: 'real' | 'other'
}

const STARTED_AT = 1_700_000_000_000n

async function deliveriesOf (spec: SessionSpec, startedAt = STARTED_AT): Promise<Delivery[]> {
  const consumer = peers[spec.consumer]
  const exit = peers[(spec.consumer + spec.exitOffset) % PEERS]
  const base = { sessionId: spec.sessionId, pricePerGb: spec.price, startedAt }
  const valid: CountersignedReceipt[] = []
  let up = 0n
  let down = 0n
  for (const [i, step] of spec.steps.entries()) {
    up += step.up
    down += step.down
    const seq = BigInt(i + 1)
    valid.push(await countersigned(consumer, exit, { ...base, bytesUp: up, bytesDown: down, seq, updatedAt: startedAt + seq * 1000n }))
  }
  const key = receiptId(valid[0])
  const out: Delivery[] = valid.map(receipt => ({ receipt, key, incarnation: 'real' }))
  const last = valid[valid.length - 1]
  const bigger = { ...base, bytesUp: up + 1_000n, bytesDown: down + 1_000_000_000n, seq: last.seq + 1n, updatedAt: last.updatedAt + 1000n }
  for (const kind of spec.invalid) {
    if (kind === 'forged') {
      const forged = body(consumer, exit, bigger)
      const sig = await mallory.key.sign(receiptSigningBytes(forged))
      out.push({ receipt: { ...forged, consumerSig: sig, exitSig: await exit.key.sign(receiptSigningBytes(forged)) } })
    } else if (kind === 'tampered') {
      out.push({ receipt: { ...last, bytesDown: last.bytesDown + 1_000_000n } })
    } else if (kind === 'badExitSig') {
      const exitSig = last.exitSig.slice()
      exitSig[7] ^= 0x10
      out.push({ receipt: { ...last, exitSig } })
    } else if (kind === 'selfDeal') {
      const self = body(consumer, consumer, bigger)
      const sig = await consumer.key.sign(receiptSigningBytes(self))
      out.push({ receipt: { ...self, consumerSig: sig, exitSig: sig } })
    } else if (kind === 'otherSession') {
      // an older session with the same id: valid signatures, other start time
      const other = await countersigned(consumer, exit, { ...bigger, startedAt: startedAt - 60_000n, seq: 40n })
      out.push({ receipt: other, key, incarnation: 'other' })
    } else {
      out.push({ receipt: await countersign(last, exit.key), key, incarnation: 'real' })
    }
  }
  return out
}

function shuffle<T> (items: T[], order: number[]): T[] {
  return items.map((item, i) => ({ item, rank: order[i % order.length] * 1000 + i }))
    .sort((a, b) => a.rank - b.rank)
    .map(x => x.item)
}

/** The model: per session key, the first incarnation delivered owns it; its largest seq counts. */
function expectedMaxima (deliveries: Delivery[]): Map<string, CountersignedReceipt> {
  const owner = new Map<string, string>()
  const max = new Map<string, CountersignedReceipt>()
  for (const d of deliveries) {
    if (d.key == null) continue
    if (!owner.has(d.key)) owner.set(d.key, d.incarnation!)
    if (owner.get(d.key) !== d.incarnation) continue
    const r = d.receipt as CountersignedReceipt
    const held = max.get(d.key)
    if (held == null || r.seq > held.seq) max.set(d.key, r)
  }
  return max
}

interface Totals { earned: bigint, spent: bigint, carried: bigint, used: bigint }

function totalsOf (receipts: Iterable<CountersignedReceipt>, peer: Party): Totals {
  const t: Totals = { earned: 0n, spent: 0n, carried: 0n, used: 0n }
  const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(b)
  for (const r of receipts) {
    const bytes = r.bytesUp + r.bytesDown
    const cost = costMicro(bytes, r.pricePerGb)
    if (same(r.exit, peer.bytes)) { t.earned += cost; t.carried += bytes }
    if (same(r.consumer, peer.bytes)) { t.spent += cost; t.used += bytes }
  }
  return t
}

/** Every peer with a proof of work and an allowance no scenario can spend: every receipt is paid in full. */
const FUNDED = 10n ** 15n

describe('accounting under arbitrary interleavings', () => {
  it('balances equal the sum of cost(valid maximum) per session, in the ledger and the tracker', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb, async ({ sessions, order }) => {
      const all: Delivery[] = []
      for (const spec of sessions) all.push(...await deliveriesOf(spec))
      const deliveries = shuffle(all, order)

      const ledger = Ledger.open(':memory:', { powDifficulty: POW_BITS, allowanceMicro: FUNDED })
      for (const [p, nonce] of pows) ledger.recordPow(p.bytes, nonce, POW_BITS)
      const tracker = new ReceiptTracker()
      for (const d of deliveries) {
        await ledger.recordReceipt(d.receipt, 'gossip').catch(err => { expect(err.name).toBe('ReceiptError') })
        await tracker.accept(d.receipt).catch(err => { expect(err.name).toBe('ReceiptError') })
      }

      const expected = expectedMaxima(deliveries)
      expect(ledger.size).toBe(expected.size)
      expect(tracker.size).toBe(expected.size)
      for (const [key, r] of expected) {
        expect(ledger.get(key)?.receipt).toEqual(r)
        expect(tracker.current(key)).toEqual(r)
      }
      const tracked = [...tracker.entries()].map(([, r]) => r as CountersignedReceipt)
      for (const peer of [...peers, mallory]) {
        const want = totalsOf(expected.values(), peer)
        const balance = ledger.balance(peer.bytes)
        expect({ earned: balance.earnedMicro, spent: balance.spentMicro, carried: balance.bytesCarried, used: balance.bytesUsed }).toEqual(want)
        expect(balance.unpaidMicro).toBe(0n)
        expect(balance.balanceMicro).toBe(FUNDED + want.earned - want.spent)
        expect(totalsOf(tracked, peer)).toEqual(want)
      }
      ledger.close()
    }), { numRuns: 30 })
  })

  it('with little or no allowance, credit is only moved: consumers are charged in full, exits paid what the payer had, and no one mints', async () => {
    // proofs of work known from the start, and ones that arrive after the receipts (which then settle debts)
    const fundedArb = fc.record({ allowance: fc.constantFrom(0n, 1n, 1_000n, 50_000_000n), proven: fc.subarray([0, 1, 2, 3, 4]), late: fc.subarray([0, 1, 2, 3, 4]) })
    await fc.assert(fc.asyncProperty(scenarioArb, fundedArb, async ({ sessions, order }, { allowance, proven: early, late }) => {
      const all: Delivery[] = []
      for (const spec of sessions) all.push(...await deliveriesOf(spec))
      const ledger = Ledger.open(':memory:', { powDifficulty: POW_BITS, allowanceMicro: allowance })
      const everyone = [...peers, mallory]
      for (const i of early) ledger.recordPow(everyone[i].bytes, pows.get(everyone[i])!, POW_BITS)
      const deliveries = shuffle(all, order)
      for (const d of deliveries) await ledger.recordReceipt(d.receipt, 'gossip').catch(err => { expect(err.name).toBe('ReceiptError') })
      for (const i of late) ledger.recordPow(everyone[i].bytes, pows.get(everyone[i])!, POW_BITS)
      const proven = new Set([...early, ...late])

      const expected = expectedMaxima(deliveries)
      let sumBalance = 0n
      let sumPositive = 0n
      let sumUnpaid = 0n
      for (const peer of everyone) {
        const want = totalsOf(expected.values(), peer)
        const b = ledger.balance(peer.bytes)
        // what receipts prove is unchanged: bytes, and the consumer's charge
        expect({ spent: b.spentMicro, carried: b.bytesCarried, used: b.bytesUsed }).toEqual({ spent: want.spent, carried: want.carried, used: want.used })
        // an exit's carried cost is split, never grown: paid or unpaid
        expect(b.earnedMicro + b.unpaidMicro).toBe(want.earned)
        expect(b.earnedMicro >= 0n && b.unpaidMicro >= 0n).toBe(true)
        expect(b.balanceMicro).toBe(b.allowanceMicro + b.earnedMicro - b.spentMicro)
        sumBalance += b.balanceMicro
        sumPositive += b.balanceMicro > 0n ? b.balanceMicro : 0n
        sumUnpaid += b.unpaidMicro
      }
      // the unpaid part of each exit is exactly what its consumers owe it, and each consumer's owed total is its rows
      const debts = (ledger as any).database.prepare('SELECT consumer, exit, amount_micro FROM debts').all() as Array<{ consumer: Uint8Array, exit: Uint8Array, amount_micro: string }>
      const sumOf = (rows: typeof debts): bigint => rows.reduce((sum, d) => sum + BigInt(d.amount_micro), 0n)
      for (const peer of everyone) {
        expect(sumOf(debts.filter(d => Buffer.from(d.exit).equals(peer.bytes)))).toBe(ledger.balance(peer.bytes).unpaidMicro)
        const owed = (ledger as any).database.prepare('SELECT owed_micro FROM totals WHERE peer = ?').get(peer.bytes)?.owed_micro ?? '0'
        expect(sumOf(debts.filter(d => Buffer.from(d.consumer).equals(peer.bytes)))).toBe(BigInt(owed))
        expect(debts.every(d => BigInt(d.amount_micro) > 0n)).toBe(true)
      }
      const allowances = BigInt(proven.size) * allowance
      // conservation: every credit paid was someone's charge
      expect(sumBalance).toBe(allowances - sumUnpaid)
      // no minting: what anyone holds came out of an allowance
      expect(sumPositive).toBeLessThanOrEqual(allowances)
      ledger.close()
    }), { numRuns: 30 })
  })

  it('every exit is paid in full once every consumer has shown a proof of work, whatever came first', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb, fc.array(fc.nat(), { minLength: 5, maxLength: 5 }), async ({ sessions, order }, when) => {
      const all: Delivery[] = []
      for (const spec of sessions) all.push(...await deliveriesOf(spec))
      const deliveries = shuffle(all, order)
      const ledger = Ledger.open(':memory:', { powDifficulty: POW_BITS, allowanceMicro: FUNDED })
      const everyone = [...peers, mallory]
      // each proof arrives at some point among the receipts, or after all of them
      for (const [k, d] of deliveries.entries()) {
        for (const [i, p] of everyone.entries()) if (when[i] % (deliveries.length + 1) === k) ledger.recordPow(p.bytes, pows.get(p)!, POW_BITS)
        await ledger.recordReceipt(d.receipt, 'gossip').catch(err => { expect(err.name).toBe('ReceiptError') })
      }
      for (const p of everyone) ledger.recordPow(p.bytes, pows.get(p)!, POW_BITS)
      const expected = expectedMaxima(deliveries)
      for (const peer of everyone) {
        const want = totalsOf(expected.values(), peer)
        const b = ledger.balance(peer.bytes)
        expect({ earned: b.earnedMicro, unpaid: b.unpaidMicro, spent: b.spentMicro }).toEqual({ earned: want.earned, unpaid: 0n, spent: want.spent })
      }
      ledger.close()
    }), { numRuns: 30 })
  })

  it('pruning third parties\' sessions at any time moves no balance, keeps this node\'s, and never counts a session twice', async () => {
    const DAY = 86_400_000
    const retentionArb = fc.record({
      // the day each session starts, after STARTED_AT
      startDays: fc.array(fc.nat(30), { minLength: 4, maxLength: 4 }),
      // after delivery `after` (modulo their number), the clock moves on `days` and the ledger prunes
      prunes: fc.array(fc.record({ after: fc.nat(63), days: fc.integer({ min: 1, max: 45 }) }), { minLength: 1, maxLength: 6 })
    })
    await fc.assert(fc.asyncProperty(scenarioArb, retentionArb, async ({ sessions, order }, { startDays, prunes }) => {
      const all: Delivery[] = []
      for (const [i, spec] of sessions.entries()) all.push(...await deliveriesOf(spec, STARTED_AT + BigInt(startDays[i] * DAY)))
      const deliveries = shuffle(all, order)
      let clock = Number(STARTED_AT)
      // peers[0] is this node: its sessions are 'own'
      const self = peers[0]
      const ledger = Ledger.open(':memory:', { selfPeerId: peerIdFromPrivateKey(self.key), powDifficulty: POW_BITS, allowanceMicro: FUNDED, now: () => clock, gossipRetentionMs: 30 * DAY })
      for (const [p, nonce] of pows) ledger.recordPow(p.bytes, nonce, POW_BITS)
      const everyone = [...peers, mallory]
      const balances = (): unknown[] => everyone.map(p => ledger.balance(p.bytes))
      const mine = (r: Receipt): boolean => [r.consumer, r.exit].some(b => b != null && Buffer.from(b).equals(self.bytes))
      // the model: each session (key and start) counts once, by the largest receipt the ledger took for it
      const taken = new Map<string, CountersignedReceipt>()
      for (const [k, d] of deliveries.entries()) {
        const result = await ledger.recordReceipt(d.receipt, mine(d.receipt) ? 'own' : 'gossip').catch(err => { expect(err.name).toBe('ReceiptError') })
        if (result === 'inserted' || result === 'updated') {
          const session = `${d.key}/${d.receipt.startedAt}`
          const held = taken.get(session)
          if (held == null || d.receipt.seq! > held.seq) taken.set(session, d.receipt as CountersignedReceipt)
        }
        for (const p of prunes.filter(p => p.after % deliveries.length === k)) {
          clock += p.days * DAY
          const before = balances()
          ledger.pruneGossip(1_000)
          expect(balances()).toEqual(before)
        }
      }
      for (const peer of everyone) {
        const want = totalsOf(taken.values(), peer)
        const b = ledger.balance(peer.bytes)
        expect({ earned: b.earnedMicro, spent: b.spentMicro, carried: b.bytesCarried, used: b.bytesUsed }).toEqual(want)
      }
      // this node's sessions are all still held
      for (const r of taken.values()) if (mine(r)) expect(ledger.get(receiptId(r))?.receipt.startedAt).toBe(r.startedAt)
      ledger.close()
    }), { numRuns: 30 })
  })
})
