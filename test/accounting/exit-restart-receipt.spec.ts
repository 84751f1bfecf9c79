/**
 * An exit that restarts (its sessions were in memory) still takes the
 * receipt its consumer owes for bytes carried before the restart, for a
 * session it holds a stored receipt of: the consumer used to be refused
 * ("unknown session") every second for ten minutes, and the bytes went
 * unpaid. Real ConsumerSessions and ExitSessions over a real libp2p
 * connection, real ledger files; the restart is a new ExitSessions on the
 * same ledger, as a restarted node makes.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { afterAll, expect, it } from 'vitest'
import { Ledger } from '../../src/accounting/ledger.ts'
import { ExitSessions, MAX_SIGNED_AHEAD } from '../../src/accounting/exit-sessions.ts'
import { lpStream } from '@libp2p/utils'
import { RECEIPT_PROTOCOL } from '../../src/constants.ts'
import { ReceiptStreamMessage } from '../../src/accounting/pb/receipt-stream.ts'
import { encodeReceipt, signAsConsumer } from '../../src/accounting/receipts.ts'
import { DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import { waitFor } from '../utils/cli.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { nodesWithLedgers, startSessions } from './sessions-pair.ts'
import type { Libp2p } from '@libp2p/interface'

const MiB = 1024 * 1024
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => { for (const c of cleanups.reverse()) await c() })

it('a restarted exit takes the receipt for what it carried before the restart, for a session it holds a receipt of', async () => {
  const { keys, nodes, ledgers, stop } = await nodesWithLedgers('sb-exit-restart-')
  cleanups.push(stop)
  const { exit, consumer } = await startSessions(keys, nodes, ledgers, { creditLimitMicro: -(10n ** 12n) })
  cleanups.push(async () => { await consumer.stop() })
  const [exitPeer, consumerPeer] = [nodes[0].peerId, nodes[1].peerId]
  const sessionId = consumer.sessionFor(exitPeer)
  const storedBytes = (): bigint | undefined => {
    const r = ledgers[0].receipts().find(x => x.receipt.sessionId === sessionId)?.receipt
    return r == null ? undefined : r.bytesUp + r.bytesDown
  }

  // 2 MiB carried and signed for
  expect(exit.admit(consumerPeer, sessionId)).toBeUndefined()
  void exit.meter(consumerPeer, sessionId, 'down', 2 * MiB)
  consumer.meter(exitPeer, 'down', 2 * MiB)
  await waitFor(() => storedBytes() === BigInt(2 * MiB), { what: 'the receipt for 2 MiB at the exit' })

  // the exit restarts: sessions gone from memory, the ledger kept, the connection (and the receipt stream on it) gone
  await exit.stop()
  await nodes[0].hangUp(consumerPeer)
  const restarted = new ExitSessions({ logger: defaultLogger() }, { ledger: ledgers[0], privateKey: keys[0], pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, powDifficulty: 0, creditLimitMicro: -(10n ** 12n) })
  const refused: string[] = []
  restarted.setRefusalListener((_consumer, reason) => refused.push(reason))
  await restarted.start(nodes[0])
  cleanups.push(async () => { await restarted.stop() })

  // 300 KB the old exit carried and the consumer had not signed yet: its next receipt covers them
  consumer.meter(exitPeer, 'down', 300_000)
  await waitFor(() => storedBytes() === BigInt(2 * MiB + 300_000), { what: 'the receipt for the bytes from before the restart', timeoutMs: 15_000 })
  expect(refused).toEqual([])
  expect(consumer.pendingBytes()).toBe(0)
})

it('a session rebuilt from its stored receipt may run ahead of it by the allowance once, not by twice what it signed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sb-exit-rebuild-'))
  const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const nodes: Libp2p[] = await Promise.all(keys.map(loopbackNode))
  const ledger = Ledger.open(join(dir, 'exit.db'), { selfPeerId: nodes[0].peerId })
  const init = { ledger, privateKey: keys[0], pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, powDifficulty: 0, creditLimitMicro: -(10n ** 15n) }
  let exit = new ExitSessions({ logger: defaultLogger() }, init)
  await exit.start(nodes[0])
  cleanups.push(async () => {
    await exit.stop()
    for (const n of nodes) await n.stop()
    ledger.close()
    await rm(dir, { recursive: true, force: true, maxRetries: 5 })
  })
  const consumer = nodes[1].peerId
  const startedAt = BigInt(Date.now())
  /** Sends a hand-signed receipt of session 'ahead' on a fresh stream; the exit's answer. */
  const send = async (bytes: number, seq: bigint): Promise<ReceiptStreamMessage> => {
    const stream = await nodes[1].dialProtocol(nodes[0].getMultiaddrs()[0], RECEIPT_PROTOCOL)
    const lp = lpStream(stream, { maxDataLength: 4096 })
    const signed = await signAsConsumer({ sessionId: 'ahead', consumer: consumer.toMultihash().bytes, exit: nodes[0].peerId.toMultihash().bytes, bytesUp: BigInt(bytes), bytesDown: 0n, seq, startedAt, updatedAt: startedAt + seq, pricePerGb: DEFAULT_PRICE_PER_GB_MICRO }, keys[1])
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(encodeReceipt(signed)) }))
    const answer = ReceiptStreamMessage.decode(await lp.read({ signal: AbortSignal.timeout(5000) }))
    await stream.close()
    return answer
  }

  // 1,000 bytes carried, a receipt far ahead of them (uploads on the way, it says): within twice that plus the allowance
  expect(exit.admit(consumer, 'ahead')).toBeUndefined()
  void exit.meter(consumer, 'ahead', 'up', 1_000)
  const ahead = 900_000_000
  expect((await send(ahead, 1n)).receipt).toBeDefined()

  // the exit restarts; the session is rebuilt from that receipt, nothing more carried
  await exit.stop()
  await nodes[0].hangUp(consumer)
  await waitFor(() => nodes[1].getConnections(nodes[0].peerId).length === 0, { what: 'the connection to close at both ends' })
  exit = new ExitSessions({ logger: defaultLogger() }, init)
  await exit.start(nodes[0])
  // counted twice, the 900 MB signed ahead would have let it sign 2.8 GB more
  const refused = await send(ahead + MAX_SIGNED_AHEAD + 1, 2n)
  expect(refused.receipt).toBeUndefined()
  expect(refused.error).toBe(`receipt signs ${ahead + MAX_SIGNED_AHEAD + 1} bytes, but 0 were carried here since its stored receipt for ${ahead}: at most ${ahead + MAX_SIGNED_AHEAD} can be signed (twice that, plus ${MAX_SIGNED_AHEAD} for uploads on the way or lost)`)
  expect((await send(ahead + MAX_SIGNED_AHEAD, 2n)).receipt).toBeDefined()
})
