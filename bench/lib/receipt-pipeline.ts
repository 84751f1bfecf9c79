/**
 * What accounting's receipt protocol costs in CPU, measured directly: a
 * consumer and an exit (real ConsumerSessions and ExitSessions, real
 * libp2p nodes over TCP, real ledger files) run in this process, and the
 * consumer is told a MiB was carried every few milliseconds, as on a busy
 * tunnel, so it signs a receipt per MiB that the exit verifies, stores,
 * countersigns and answers, and the consumer verifies and stores. No tunnel
 * data moves: the process CPU over the run, minus the same pacing loop with
 * accounting left out, is the CPU accounting adds per MiB carried (both
 * sides together, GC and worker threads included).
 *
 * Why not only "tunnel with accounting on vs off": on two shared cores the
 * CPU per MiB of identical tunnels varies by ±25 % from run to run (an A/A
 * comparison shows it), which buries a cost of a few percent.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import { createLoopbackNode } from './bare.ts'
import { cpuMs } from './cpu.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import { ExitSessions } from '../../src/accounting/exit-sessions.ts'
import { DEFAULT_PRICE_PER_GB_MICRO, DEFAULT_RECEIPT_INTERVAL_BYTES } from '../../src/accounting/constants.ts'

export interface PipelineFigures {
  receipts: number
  /** CPU µs accounting adds per receipt (= per MiB carried), both sides. */
  cpuUsPerReceipt: number
  /** Receipts of the measured run that the exit countersigned and stored. */
  stored: bigint
}

const STEP_MS = 4
const ECHO_PROTOCOL = '/spareband-bench/echo/1.0.0'

const cpuUs = (): number => cpuMs() * 1000

/** Runs `step` every STEP_MS, `n` times; returns the process CPU µs used. */
async function paced (n: number, step: () => void): Promise<number> {
  const before = cpuUs()
  for (let i = 0; i < n; i++) {
    step()
    await sleep(STEP_MS)
  }
  return cpuUs() - before
}

export async function measureReceiptPipeline (receipts = 500): Promise<PipelineFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'spareband-bench-receipts-'))
  const [exitPrivate, consumerPrivate] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const [exitNode, consumerNode] = await Promise.all([createLoopbackNode(exitPrivate), createLoopbackNode(consumerPrivate)])
  const exitKey = exitNode.peerId
  const consumerPeer = consumerNode.peerId
  // the consumer can pay for every receipt (the common path: a paid exit, no debts), with
  // an allowance no run spends and a proof of work of 0 bits, which nonce 0 meets
  const funded = { powDifficulty: 0, allowanceMicro: 10n ** 15n }
  const exitLedger = Ledger.open(join(dir, 'exit.db'), { selfPeerId: exitKey, ...funded })
  const consumerLedger = Ledger.open(join(dir, 'consumer.db'), { selfPeerId: consumerPeer, ...funded })
  for (const ledger of [exitLedger, consumerLedger]) ledger.recordPow(consumerPeer, 0n, 0)
  const exit = new ExitSessions({ logger: defaultLogger() }, {
    ledger: exitLedger,
    privateKey: exitPrivate,
    pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO,
    creditLimitMicro: 0n,
    powDifficulty: 0
  })
  const consumer = new ConsumerSessions({
    logger: defaultLogger(),
    dialProtocol: async (peer, protocol, options) => consumerNode.dialProtocol(peer, protocol, options)
  }, { ledger: consumerLedger, privateKey: consumerPrivate, priceOf: () => DEFAULT_PRICE_PER_GB_MICRO })
  try {
    await exit.start(exitNode)
    consumer.start()
    await consumerNode.dial(exitNode.getMultiaddrs()[0])
    const sessionId = consumer.sessionFor(exitKey)
    const refusal = exit.admit(consumerPeer, sessionId)
    if (refusal != null) throw new Error(`exit refused the session: ${refusal.message}`)
    const mib = DEFAULT_RECEIPT_INTERVAL_BYTES
    const carry = (): void => {
      void exit.meter(consumerPeer, sessionId, 'down', mib)
      consumer.meter(exitKey, 'down', mib)
    }
    // warm-up: the receipt stream, JIT
    await paced(50, carry)
    const baseline = await paced(receipts, () => {})
    const seqBefore = exitLedger.receipts()[0]?.receipt.seq ?? 0n
    const withAccounting = await paced(receipts, carry)
    // let the last answers land and the consumer's batch be written
    await sleep(300)
    consumerLedger.flush()
    return {
      receipts,
      cpuUsPerReceipt: (withAccounting - baseline) / receipts,
      stored: (exitLedger.receipts()[0]?.receipt.seq ?? 0n) - seqBefore
    }
  } finally {
    await consumer.stop().catch(() => {})
    await exit.stop()
    await consumerNode.stop()
    await exitNode.stop()
    consumerLedger.close()
    exitLedger.close()
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * The floor under any receipt protocol on this stack: the CPU of one round
 * trip of two receipt-sized messages (length-prefixed, on one open stream,
 * between two real libp2p nodes over TCP, noise and yamux), paced as
 * receipts are, with no signing, checking or storing at all.
 */
export async function measureMessageRoundTrip (roundTrips = 500, bytes = 300): Promise<{ cpuUsPerRoundTrip: number }> {
  const [a, b] = await Promise.all([createLoopbackNode(), createLoopbackNode()])
  try {
    await b.handle(ECHO_PROTOCOL, async stream => {
      const lp = lpStream(stream)
      while (true) {
        const frame = await lp.read().catch(() => null)
        if (frame == null) return
        await lp.write(frame.subarray())
      }
    })
    const lp = lpStream(await a.dialProtocol(b.getMultiaddrs()[0], ECHO_PROTOCOL))
    const message = new Uint8Array(bytes).fill(7)
    // one reader, as the consumer has: answers are taken in order
    let answered = 0
    void (async () => { while (await lp.read().catch(() => null) != null) answered++ })()
    const roundTrip = (): void => { void lp.write(message) }
    await paced(50, roundTrip)
    const baseline = await paced(roundTrips, () => {})
    const used = await paced(roundTrips, roundTrip)
    await sleep(100)
    if (answered !== roundTrips + 50) throw new Error(`${answered} of ${roundTrips + 50} messages answered`)
    return { cpuUsPerRoundTrip: (used - baseline) / roundTrips }
  } finally {
    await a.stop()
    await b.stop()
  }
}
