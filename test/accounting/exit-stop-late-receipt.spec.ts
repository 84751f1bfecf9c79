/**
 * A receipt that reaches an exit after its accounting stopped is refused,
 * not countersigned. Its stream is still open then (libp2p closes the
 * connections after the services, gossip included), and the exit used to
 * countersign it and answer, so the consumer counted it as spent, and to
 * publish it on a gossip that had stopped: no one else ever heard of it (the
 * churn simulation's observer missed 8 % of what consumers spent, once).
 */
import { expect, it } from 'vitest'
import { waitFor } from '../utils/cli.ts'
import { nodesWithLedgers, startSessions } from './sessions-pair.ts'
import type { CountersignedReceipt } from '../../src/accounting/receipts.ts'

const MiB = 1024 * 1024

it('an exit whose accounting stopped countersigns no receipt it could not publish', async () => {
  const t = await nodesWithLedgers('sb-late-receipt-')
  const { nodes, ledgers } = t
  // what gossip carries: nothing once the exit's accounting has stopped (the node stops its gossip right after)
  const published: CountersignedReceipt[] = []
  let gossipUp = true
  // an interval no test outlasts: only the final publications go out
  const { exit, consumer } = await startSessions(t.keys, nodes, ledgers, { creditLimitMicro: -(10n ** 12n), publishIntervalMs: 10 * 60_000 }, e => {
    e.setPublisher(async r => { if (gossipUp) published.push(r) })
  })
  try {
    const sessionId = consumer.sessionFor(nodes[0].peerId)
    expect(exit.admit(nodes[1].peerId, sessionId)).toBeUndefined()
    void exit.meter(nodes[1].peerId, sessionId, 'down', MiB)
    consumer.meter(nodes[0].peerId, 'down', MiB)
    await waitFor(() => ledgers[0].receipts()[0]?.receipt.bytesDown === BigInt(MiB), { timeoutMs: 10_000, intervalMs: 10, what: 'the first receipt stored' })
    await exit.stop()
    gossipUp = false
    expect(published.map(r => r.bytesDown)).toEqual([BigInt(MiB)])
    // the tunnel's last bytes, signed on the receipt stream still open
    consumer.meter(nodes[0].peerId, 'down', MiB)
    await waitFor(() => consumer.refused > 0 || ledgers[1].receipts()[0]?.receipt.bytesDown === BigInt(2 * MiB), { timeoutMs: 10_000, intervalMs: 10, what: 'the exit\'s answer to the late receipt' })
    // what the consumer counts as spent is what the network heard of, and what the exit holds
    expect(ledgers[1].receipts().map(s => s.receipt.bytesDown)).toEqual([BigInt(MiB)])
    expect(ledgers[0].receipts().map(s => s.receipt.bytesDown)).toEqual([BigInt(MiB)])
    expect(consumer.refused).toBeGreaterThan(0)
  } finally {
    await consumer.stop()
    await t.stop()
  }
}, 30_000)
