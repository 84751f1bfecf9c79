/**
 * Reputation reports: the signed format, what a node makes of reports it
 * holds (weighted by what each reporter paid the exit, on a real ledger
 * file), what a node observes of the exits it uses, and the topic
 * validator. The network end to end is in reputation-network.spec.ts.
 */

import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fc from 'fast-check'
import { join } from 'node:path'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { defaultLogger } from '@libp2p/logger'
import { ReputationErrorCode } from '../../src/accounting/errors.ts'
import { decodeReport, encodeReport, reportSigningBytes, signReport, verifyReport } from '../../src/accounting/reputation.ts'
import { ReputationBook } from '../../src/accounting/reputation-book.ts'
import { ReputationObserver, isExitFault } from '../../src/accounting/reputation-observer.ts'
import { ReputationGossip } from '../../src/accounting/reputation-gossip.ts'
import { ReputationReport as ReportMessage } from '../../src/accounting/pb/reputation.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { solvePow } from '../../src/accounting/credits.ts'
import { REPUTATION_FULL_WEIGHT_MICRO } from '../../src/accounting/constants.ts'
import { hour, minute } from '../../src/constants.ts'
import { tempDir } from '../utils/cli.ts'
import { caught, countersigned, parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { ReportBody, SignedReport } from '../../src/accounting/reputation.ts'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import type { GossipSub } from '@libp2p/gossipsub'

const NOW = 1_800_000_000_000

function body (reporter: Party, subject: Party, overrides: Partial<ReportBody> = {}): ReportBody {
  return { reporter: reporter.bytes, subject: subject.bytes, issuedAt: BigInt(NOW), windowSeconds: 3600, successes: 9, failures: 1, ...overrides }
}

async function report (reporter: Party, subject: Party, overrides: Partial<ReportBody> = {}): Promise<SignedReport> {
  return signReport(body(reporter, subject, overrides), reporter.key)
}

let alice: Party, bob: Party, carol: Party, exit: Party

beforeAll(async () => {
  [alice, bob, carol, exit] = await parties(4)
})

describe('reputation report format', () => {
  it('signs, encodes, decodes and verifies; the peers come back', async () => {
    const r = await report(alice, exit)
    const bytes = encodeReport(r)
    expect(bytes.byteLength).toBeLessThan(256)
    const back = decodeReport(bytes)
    expect(back).toEqual({ ...r, reporter: Uint8Array.from(r.reporter), subject: Uint8Array.from(r.subject), signature: Uint8Array.from(r.signature) })
    const peers = await verifyReport(back)
    expect(peers.reporter.toString()).toBe(alice.id)
    expect(peers.subject.toString()).toBe(exit.id)
  })

  it('refuses a report whose any one byte changed, and one signed over the receipt domain', async () => {
    const bytes = encodeReport(await report(alice, exit))
    for (let i = 0; i < bytes.byteLength; i++) {
      const changed = Uint8Array.from(bytes)
      changed[i] ^= 0x01
      let err: any
      try {
        await verifyReport(decodeReport(changed))
      } catch (e) { err = e }
      expect(err?.name, `byte ${i}`).toBe('ReputationError')
    }
    // the same fields signed without the reputation domain: a signature over other bytes
    const r = await report(alice, exit)
    const wrongDomain = { ...r, signature: Uint8Array.from(await alice.key.sign(reportSigningBytes(r).subarray('spareband-reputation-v1'.length))) }
    expect((await caught(async () => verifyReport(wrongDomain))).code).toBe(ReputationErrorCode.BAD_SIGNATURE)
  })

  it('refuses self-reports, another signer, empty counts, bad windows, oversize and non-canonical bytes', async () => {
    expect((await caught(async () => report(exit, exit))).code).toBe(ReputationErrorCode.WRONG_PEER)
    expect((await caught(async () => signReport(body(alice, exit), bob.key))).code).toBe(ReputationErrorCode.WRONG_PEER)
    expect((await caught(async () => report(alice, exit, { successes: 0, failures: 0 }))).code).toBe(ReputationErrorCode.MALFORMED)
    expect((await caught(async () => report(alice, exit, { windowSeconds: 0 }))).code).toBe(ReputationErrorCode.MALFORMED)
    expect((await caught(async () => report(alice, exit, { windowSeconds: 86_401 }))).code).toBe(ReputationErrorCode.MALFORMED)
    expect((await caught(async () => report(alice, exit, { successes: -1 }))).code).toBe(ReputationErrorCode.MALFORMED)
    expect((await caught(async () => report(alice, exit, { subject: Uint8Array.from([0, 3, 1, 2, 3]) }))).code).toBe(ReputationErrorCode.UNSUPPORTED_KEY)
    const bytes = encodeReport(await report(alice, exit))
    expect((await caught(() => decodeReport(new Uint8Array(257)))).code).toBe(ReputationErrorCode.TOO_LARGE)
    // an unknown field appended: decodes under protobuf rules, but is another spelling of the same report
    expect((await caught(() => decodeReport(Uint8Array.from([...bytes, 0x40, 0x01])))).code).toBe(ReputationErrorCode.MALFORMED)
    // the signature missing
    const unsigned = ReportMessage.encode({ ...decodeReport(bytes), signature: undefined } as ReportMessage)
    expect((await caught(async () => verifyReport(decodeReport(unsigned)))).code).toBe(ReputationErrorCode.BAD_SIGNATURE)
  })

  it('never throws anything but a ReputationError on arbitrary bytes', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async bytes => {
      try {
        await verifyReport(decodeReport(bytes))
      } catch (err: any) {
        expect(err.name).toBe('ReputationError')
      }
    }), { numRuns: 300 })
  })
})

describe('reputation book on a real ledger', () => {
  let ledger: Ledger
  let now = NOW
  const weightOf = (reporter: Uint8Array, subject: Uint8Array): number => Number(ledger.paidBetween(reporter, subject, REPUTATION_FULL_WEIGHT_MICRO)) / Number(REPUTATION_FULL_WEIGHT_MICRO)

  beforeAll(async () => {
    ledger = Ledger.open(join(await tempDir('sb-reputation-'), 'ledger.db'), { powDifficulty: 4 })
    // alice paid the exit 0.02 credit (20 MB at 1 credit/GB): full weight. bob paid 0.005: half.
    // carol has no proof of work, so no allowance: her receipt is all debt, she paid nothing.
    for (const p of [alice, bob]) ledger.recordPow(p.bytes, await solvePow(p.bytes, 4), 4)
    await ledger.recordReceipt(await countersigned(alice, exit, { sessionId: 'a', bytesUp: 0n, bytesDown: 20_000_000n }), 'gossip')
    await ledger.recordReceipt(await countersigned(bob, exit, { sessionId: 'b', bytesUp: 0n, bytesDown: 5_000_000n }), 'gossip')
    await ledger.recordReceipt(await countersigned(carol, exit, { sessionId: 'c', bytesUp: 0n, bytesDown: 50_000_000n }), 'gossip')
  })
  afterAll(() => { ledger.close() })

  it('weighs what each reporter paid the exit: in full, in part, and nothing for what is owed', () => {
    expect(ledger.paidBetween(alice.bytes, exit.bytes)).toBe(20_000n)
    expect(ledger.paidBetween(bob.bytes, exit.bytes)).toBe(5_000n)
    expect(ledger.paidBetween(carol.bytes, exit.bytes)).toBe(0n)
    expect(ledger.paidBetween(exit.bytes, alice.bytes)).toBe(0n)
    expect(weightOf(alice.bytes, exit.bytes)).toBe(2)
    expect(weightOf(bob.bytes, exit.bytes)).toBe(0.5)
  })

  it('scores (1 + Σ w·s/(s+f)) / (2 + Σ w) with weights capped at 1; a reporter that paid nothing is not held', async () => {
    const book = new ReputationBook({ weightOf, now: () => now })
    expect(book.score(exit.bytes)).toBeUndefined()
    expect(book.consider(await report(carol, exit, { successes: 0, failures: 50 }))).toBe('weightless')
    expect(book.score(exit.bytes)).toBeUndefined()
    expect(book.consider(await report(alice, exit, { successes: 9, failures: 1 }))).toBe('new')
    // alice weighs 1 (paid twice the full weight: capped), 0.9 successes
    expect(book.score(exit.bytes)).toBeCloseTo((1 + 0.9) / 3, 10)
    expect(book.consider(await report(bob, exit, { successes: 0, failures: 4 }))).toBe('new')
    expect(book.score(exit.bytes)).toBeCloseTo((1 + 0.9) / 3.5, 10)
    expect(book.reporters(exit.bytes)).toBe(2)
    expect(book.score(alice.bytes)).toBeUndefined()
  })

  it('keeps a reporter\'s newest report only: copies and older ones are duplicates, one within a minute too soon', async () => {
    const book = new ReputationBook({ weightOf, now: () => now })
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(NOW), successes: 1, failures: 0 }))).toBe('new')
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(NOW), successes: 1, failures: 0 }))).toBe('duplicate')
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(NOW - 1), successes: 0, failures: 1 }))).toBe('duplicate')
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(NOW + 30_000), successes: 0, failures: 1 }))).toBe('too-soon')
    expect(book.score(exit.bytes)).toBeCloseTo(2 / 3, 10)
    now = NOW + 2 * minute
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(NOW + 2 * minute), successes: 0, failures: 1 }))).toBe('new')
    expect(book.size).toBe(1)
    // cached for 30 s: a new report drops the cache at once
    expect(book.score(exit.bytes)).toBeCloseTo(1 / 3, 10)
    now = NOW
  })

  it('counts no report older than a day, nor one dated over an hour ahead', async () => {
    const book = new ReputationBook({ weightOf, now: () => now })
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(NOW - 25 * hour) }))).toBe('out-of-window')
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(NOW + 2 * hour) }))).toBe('out-of-window')
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(NOW - 23 * hour) }))).toBe('new')
    expect(book.score(exit.bytes)).toBeDefined()
    now = NOW + 2 * hour
    expect(book.score(exit.bytes)).toBeUndefined()
    expect(book.size).toBe(0)
    now = NOW
  })

  it('a ring of keys that never paid the exit cannot move its score; the held reports are bounded', async () => {
    const book = new ReputationBook({ weightOf, now: () => now, maxReports: 3 })
    const ring = await parties(20)
    for (const p of ring) expect(book.consider(await report(p, exit, { successes: 1000, failures: 0 }))).toBe('weightless')
    expect(book.score(exit.bytes)).toBeUndefined()
    // only paying reporters are held, and at most maxReports of them, the least recently updated dropped first
    const weightAll = new ReputationBook({ weightOf: () => 1, now: () => now, maxReports: 3 })
    for (const p of ring.slice(0, 5)) expect(weightAll.consider(await report(p, exit))).toBe('new')
    expect(weightAll.size).toBe(3)
    expect(weightAll.reporters(exit.bytes)).toBe(3)
  })
})

describe('what a node observes of the exits it uses', () => {
  it('counts against the exit only what is its doing', () => {
    for (const s of [undefined, 'BUSY', 'QUOTA_EXCEEDED', 'OUTSIDE_SCHEDULE', 'NO_ANSWER', 'StreamResetError']) expect(isExitFault(s), String(s)).toBe(true)
    for (const s of ['POLICY_DENIED', 'DNS_FAILED', 'UNREACHABLE', 'CONNECT_REFUSED', 'TIMEOUT', 'RATE_LIMITED', 'INSUFFICIENT_CREDIT', 'BAD_REQUEST', 'AbortError']) expect(isExitFault(s), s).toBe(false)
  })

  it('reports each exit used since its last report, over the last day, and forgets what is older', () => {
    const o = new ReputationObserver()
    o.observe('x', true, undefined, NOW)
    o.observe('x', false, 'BUSY', NOW + 1000)
    o.observe('x', false, 'DNS_FAILED', NOW + 2000)
    o.observe('y', true, undefined, NOW + 3 * hour)
    expect(o.due(NOW + 3 * hour, 10 * minute)).toEqual([
      { exit: 'x', successes: 1, failures: 1, windowSeconds: (3 * hour + NOW % hour) / 1000 },
      { exit: 'y', successes: 1, failures: 0, windowSeconds: (NOW % hour) / 1000 || 1 }
    ])
    // nothing new: nothing due; something new, but within the gap: not yet
    expect(o.due(NOW + 4 * hour, 10 * minute)).toEqual([])
    o.observe('x', true, undefined, NOW + 3 * hour + minute)
    expect(o.due(NOW + 3 * hour + 2 * minute, 10 * minute)).toEqual([])
    const later = o.due(NOW + 3 * hour + 20 * minute, 10 * minute)
    expect(later.map(e => [e.exit, e.successes, e.failures])).toEqual([['x', 2, 1]])
    // a day on, the first hour's counts are gone
    o.observe('x', true, undefined, NOW + 25 * hour)
    expect(o.due(NOW + 25 * hour, 10 * minute).map(e => [e.exit, e.successes, e.failures])).toEqual([['x', 2, 0]])
    // a clock set back two hours: counted in the newest hour, not in a bucket out of order that would outlive the day
    o.observe('x', false, 'NO_ANSWER', NOW + 23 * hour)
    expect(o.due(NOW + 25 * hour + hour, 10 * minute).map(e => [e.exit, e.successes, e.failures])).toEqual([['x', 2, 1]])
    expect(o.due(NOW + 50 * hour, 10 * minute)).toEqual([])
  })
})

describe('reputation topic validator', () => {
  let ledger: Ledger
  let gossip: ReputationGossip
  let book: ReputationBook

  beforeAll(async () => {
    ledger = Ledger.open(join(await tempDir('sb-reputation-gossip-'), 'ledger.db'), { powDifficulty: 4 })
    ledger.recordPow(alice.bytes, await solvePow(alice.bytes, 4), 4)
    await ledger.recordReceipt(await countersigned(alice, exit, { sessionId: 'v', bytesUp: 0n, bytesDown: 20_000_000n }), 'gossip')
    book = new ReputationBook({ weightOf: (r, s) => Number(ledger.paidBetween(r, s)) / 10_000, now: () => NOW })
    // validate() reads only the book: the pubsub is used by start() and publishDue(), not here
    gossip = new ReputationGossip({ pubsub: undefined as unknown as GossipSub, topic: 'spareband/reputation/1', book, privateKey: carol.key, logger: defaultLogger(), intervalMs: 0, now: () => NOW })
  })
  afterAll(() => { ledger.close() })

  it('accepts a valid report from a paying reporter, ignores copies and the unweighted, rejects forgeries', async () => {
    const good = encodeReport(await report(alice, exit))
    expect(await gossip.validate(good)).toBe(TopicValidatorResult.Accept)
    expect(await gossip.validate(good)).toBe(TopicValidatorResult.Ignore)
    expect(await gossip.validate(encodeReport(await report(bob, exit)))).toBe(TopicValidatorResult.Ignore)
    const forged = Uint8Array.from(good)
    forged[forged.length - 1] ^= 0x01
    expect(await gossip.validate(forged)).toBe(TopicValidatorResult.Reject)
    expect(await gossip.validate(Uint8Array.from([0x0a, 0xff]))).toBe(TopicValidatorResult.Reject)
    expect(gossip.stats).toEqual({ accepted: 1, ignored: 2, rejected: 2, published: 0 })
    expect(book.size).toBe(1)
    expect(book.score(exit.bytes)).toBeCloseTo(1.9 / 3, 10)
  })
})

describe('held reports across a restart', () => {
  it('a book on a reopened ledger holds and scores what the last one held (the newer of a reporter\'s two reports); one out of window is neither loaded nor kept', async () => {
    const file = join(await tempDir('sb-reputation-store-'), 'ledger.db')
    let now = NOW
    let ledger = Ledger.open(file, { powDifficulty: 4 })
    ledger.recordPow(alice.bytes, await solvePow(alice.bytes, 4), 4)
    await ledger.recordReceipt(await countersigned(alice, exit, { sessionId: 'p', bytesUp: 0n, bytesDown: 20_000_000n }), 'gossip')
    const weightOf = (r: Uint8Array, s: Uint8Array): number => Number(ledger.paidBetween(r, s)) / 10_000
    let book = new ReputationBook({ weightOf, now: () => now, store: ledger })
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(now - 2 * minute), successes: 1, failures: 1 }))).toBe('new')
    // a newer report of the same reporter replaces the stored one
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(now), successes: 9, failures: 1 }))).toBe('new')
    const before = book.score(exit.bytes)
    expect(before).toBeCloseTo((1 + 0.9) / 3, 10)
    await ledger.close()

    ledger = Ledger.open(file, { powDifficulty: 4 })
    book = new ReputationBook({ weightOf, now: () => now, store: ledger })
    expect(book.size).toBe(1)
    expect(book.score(exit.bytes)).toBe(before)
    expect(book.reporters(exit.bytes)).toBe(1)
    // the same report again is a copy, not news
    expect(book.consider(await report(alice, exit, { issuedAt: BigInt(now), successes: 9, failures: 1 }))).toBe('duplicate')
    await ledger.close()

    // a day and more later, the report is out of the window: not loaded, and deleted from the file
    now += 25 * hour
    ledger = Ledger.open(file, { powDifficulty: 4 })
    book = new ReputationBook({ weightOf, now: () => now, store: ledger })
    expect(book.size).toBe(0)
    expect(ledger.reports(0)).toEqual([])
    await ledger.close()
  })

  it('a store that fails leaves the report held and counted', () => {
    const failing = {
      putReport: () => { throw new Error('disk full') },
      dropReport: () => { throw new Error('disk full') },
      dropReportsBefore: () => { throw new Error('disk full') },
      reports: () => { throw new Error('disk full') }
    }
    const book = new ReputationBook({ weightOf: () => 1, now: () => NOW, store: failing })
    expect(book.size).toBe(0)
    return report(alice, exit).then(r => {
      expect(book.consider(r)).toBe('new')
      expect(book.score(exit.bytes)).toBeGreaterThan(0.5)
    })
  })
})

describe('reputation reports a node publishes', () => {
  it('reports each exit used at every tick of its interval, even a tick that comes a little early; signed, and what was seen', async () => {
    let now = NOW
    const sent: Uint8Array[] = []
    // records what would go out on the topic: the real topic is in reputation-network.spec.ts
    const pubsub = { publish: async (_topic: string, data: Uint8Array) => { sent.push(data) } } as unknown as GossipSub
    const book = new ReputationBook({ weightOf: () => 1 })
    const gossip = new ReputationGossip({ pubsub, topic: 'spareband/reputation/1', book, privateKey: alice.key, logger: defaultLogger(), intervalMs: 600_000, now: () => now })
    gossip.observe(exit.id, true)
    gossip.observe(exit.id, false, 'BUSY')
    gossip.observe(bob.id, false, 'DNS_FAILED') // the target's doing: nothing to report on bob
    expect(await gossip.publishDue()).toBe(1)
    gossip.observe(exit.id, true)
    // a timer's tick lands a few ms early as often as late
    now += 600_000 - 5
    expect(await gossip.publishDue()).toBe(1)
    const reports = await Promise.all(sent.map(async bytes => { const r = decodeReport(bytes); await verifyReport(r); return r }))
    expect(reports.map(r => [r.successes, r.failures, Number(r.issuedAt)])).toEqual([[1, 1, NOW], [2, 1, NOW + 600_000 - 5]])
    expect(reports.every(r => uint8ArrayEquals(r.reporter!, alice.bytes) && uint8ArrayEquals(r.subject!, exit.bytes))).toBe(true)
    // within a minute of the last, nothing goes, even with something new
    gossip.observe(exit.id, true)
    now += 30_000
    expect(await gossip.publishDue()).toBe(0)
    expect(gossip.stats.published).toBe(2)
  })
})

