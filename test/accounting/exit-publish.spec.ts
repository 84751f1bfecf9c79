/**
 * When the exit publishes countersigned receipts: at most once per interval
 * for a long session, and its newest receipt at the latest one interval
 * after it arrived, even when no further receipt comes. Real ConsumerSessions
 * and ExitSessions over a real libp2p connection (TCP on loopback).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import { ExitSessions } from '../../src/accounting/exit-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import { waitFor } from '../utils/cli.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import type { CountersignedReceipt } from '../../src/accounting/receipts.ts'
import type { Libp2p, PrivateKey } from '@libp2p/interface'

const MiB = 1024 * 1024
const INTERVAL = 400

describe('exit receipt publication', () => {
  let dir: string
  let nodes: Libp2p[]
  let ledgers: Ledger[]
  let exit: ExitSessions
  let consumer: ConsumerSessions
  const published: Array<{ at: number, receipt: CountersignedReceipt }> = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-publish-'))
    const keys: PrivateKey[] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    nodes = await Promise.all(keys.map(loopbackNode))
    ledgers = nodes.map((n, i) => Ledger.open(join(dir, `${i}.db`), { selfPeerId: n.peerId }))
    exit = new ExitSessions({ logger: defaultLogger() }, {
      ledger: ledgers[0], privateKey: keys[0], pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, creditLimitMicro: -(10n ** 12n), powDifficulty: 0, publishIntervalMs: INTERVAL
    })
    exit.setPublisher(async receipt => { published.push({ at: Date.now(), receipt }) })
    await exit.start(nodes[0])
    consumer = new ConsumerSessions({ logger: defaultLogger(), dialProtocol: async (peer, protocol, options) => nodes[1].dialProtocol(peer, protocol, options) },
      { ledger: ledgers[1], privateKey: keys[1], priceOf: () => DEFAULT_PRICE_PER_GB_MICRO })
    consumer.start()
    await nodes[1].dial(nodes[0].getMultiaddrs()[0])
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    for (const n of nodes ?? []) await n.stop()
    for (const l of ledgers ?? []) l.close()
    await rm(dir, { recursive: true, force: true, maxRetries: 5 })
  })

  it('publishes at most once per interval, and the newest receipt within an interval of its arrival', async () => {
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
