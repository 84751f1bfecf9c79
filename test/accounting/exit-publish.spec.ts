/**
 * When the exit publishes countersigned receipts: at most once per interval
 * for a long session, and its newest receipt at the latest one interval
 * after it arrived, even when no further receipt comes; at once when what
 * the consumer spent unpublished is a tenth of the credit it has left. Real
 * ConsumerSessions and ExitSessions over a real libp2p connection (TCP on
 * loopback).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Ledger } from '../../src/accounting/ledger.ts'
import { BYTES_PER_GB, DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import { waitFor } from '../utils/cli.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { startSessions } from './sessions-pair.ts'
import type { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import type { ExitSessions } from '../../src/accounting/exit-sessions.ts'
import type { CountersignedReceipt } from '../../src/accounting/receipts.ts'
import type { Libp2p, PrivateKey } from '@libp2p/interface'

const MiB = 1024 * 1024
const INTERVAL = 400

interface Setup {
  nodes: Libp2p[]
  ledgers: Ledger[]
  exit: ExitSessions
  consumer: ConsumerSessions
  published: Array<{ at: number, receipt: CountersignedReceipt }>
  close: () => Promise<void>
}

/** An exit (node 0) and a consumer (node 1), connected; `allowanceMicro` set, the consumer's proof of work is of 0 bits. */
async function setup (exitInit: { creditLimitMicro: bigint, publishIntervalMs: number }, allowanceMicro?: bigint): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-publish-'))
  const keys: PrivateKey[] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const nodes = await Promise.all(keys.map(loopbackNode))
  const ledgers = nodes.map((n, i) => Ledger.open(join(dir, `${i}.db`), { selfPeerId: n.peerId, ...(allowanceMicro == null ? {} : { allowanceMicro, powDifficulty: 0 }) }))
  if (allowanceMicro != null) for (const l of ledgers) l.recordPow(nodes[1].peerId, 0n, 0)
  const published: Setup['published'] = []
  const { exit, consumer } = await startSessions(keys, nodes, ledgers, exitInit, e => { e.setPublisher(async receipt => { published.push({ at: Date.now(), receipt }) }) })
  return {
    nodes,
    ledgers,
    exit,
    consumer,
    published,
    close: async () => {
      await consumer.stop()
      await exit.stop()
      for (const n of nodes) await n.stop()
      for (const l of ledgers) l.close()
      await rm(dir, { recursive: true, force: true, maxRetries: 5 })
    }
  }
}

describe('exit receipt publication', () => {
  let t: Setup

  beforeAll(async () => {
    t = await setup({ creditLimitMicro: -(10n ** 12n), publishIntervalMs: INTERVAL })
  })
  afterAll(async () => { await t?.close() })

  it('publishes at most once per interval, and the newest receipt within an interval of its arrival', async () => {
    const { nodes, ledgers, exit, consumer, published } = t
    const sessionId = consumer.sessionFor(nodes[0].peerId)
    expect(exit.admit(nodes[1].peerId, sessionId)).toBeUndefined()
    // a burst of 12 receipts, one per MiB, in well under one interval
    for (let i = 0; i < 12; i++) {
      void exit.meter(nodes[1].peerId, sessionId, 'down', MiB)
      consumer.meter(nodes[0].peerId, 'down', MiB)
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    const stored = await waitFor(() => {
      const r = ledgers[0].receipts()[0]
      return r?.receipt.bytesDown === BigInt(12 * MiB) ? r : undefined
    }, { timeoutMs: 10_000, what: 'the exit storing the twelfth receipt' })
    const arrived = Date.now()
    // no receipt comes after the burst: the newest still goes out, within an interval (and some slack)
    const last = await waitFor(() => published.find(p => p.receipt.seq === stored!.receipt.seq), { timeoutMs: 5_000, what: 'the newest receipt published' })
    expect(last!.at - arrived).toBeLessThan(INTERVAL + 300)
    // never two publications closer than the interval, and far fewer than receipts
    for (let i = 1; i < published.length; i++) expect(published[i].at - published[i - 1].at).toBeGreaterThanOrEqual(INTERVAL - 20)
    expect(published.length).toBeLessThan(12)
    expect(published.at(-1)!.receipt.bytesDown).toBe(BigInt(12 * MiB))
  })
})

describe('exit receipt publication for a consumer short of credit', () => {
  const ALLOWANCE_MIB = 20
  let t: Setup

  beforeAll(async () => {
    // an interval no test outlasts: every publication seen is a prompt one
    t = await setup({ creditLimitMicro: 0n, publishIntervalMs: 10 * 60_000 }, BigInt(ALLOWANCE_MIB * MiB) * DEFAULT_PRICE_PER_GB_MICRO / BYTES_PER_GB)
  })
  afterAll(async () => { await t?.close() })

  it('publishes at once once the unpublished spending is a tenth of the credit left, down to every receipt', async () => {
    const { nodes, ledgers, exit, consumer, published } = t
    const sessionId = consumer.sessionFor(nodes[0].peerId)
    expect(exit.admit(nodes[1].peerId, sessionId)).toBeUndefined()
    const storedAt = new Map<number, number>()
    // one receipt per MiB, each stored before the next MiB is carried
    for (let mib = 1; mib <= 12; mib++) {
      void exit.meter(nodes[1].peerId, sessionId, 'down', MiB)
      consumer.meter(nodes[0].peerId, 'down', MiB)
      await waitFor(() => ledgers[0].receipts()[0]?.receipt.bytesDown === BigInt(mib * MiB), { timeoutMs: 10_000, intervalMs: 5, what: `the exit storing receipt ${mib}` })
      storedAt.set(mib, Date.now())
    }
    await waitFor(() => published.some(p => p.receipt.bytesDown === BigInt(12 * MiB)), { timeoutMs: 2_000, intervalMs: 5, what: 'the twelfth receipt published' })
    // credit left after k MiB: 20 - k MiB. Published when the unpublished MiB times ten reach it:
    // two MiB at a time while 18..10 are left (1 x 10 < 19, 17, ..., 11), then every receipt (10 >= 9)
    const publishedMiB = published.map(p => Number(p.receipt.bytesDown) / MiB)
    expect(publishedMiB).toEqual([2, 4, 6, 8, 10, 11, 12])
    // each within moments of its receipt being stored, against an interval of ten minutes
    for (const p of published) expect(p.at - storedAt.get(Number(p.receipt.bytesDown) / MiB)!).toBeLessThan(1_000)
  })
})
