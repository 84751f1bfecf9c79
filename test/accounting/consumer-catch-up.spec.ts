/**
 * A consumer killed while the answers to its last receipts were on their
 * way never had them in its own ledger: the exit held them (and gossiped
 * them while the consumer was down), the consumer's balance read higher
 * than the exit's for good (a restart walkthrough: 48 receipts of 25
 * sessions). The exit gives the newest receipts of a consumer's other
 * sessions back with its answer to the consumer's hello. Real
 * ConsumerSessions and ExitSessions over a real libp2p connection, real
 * ledger files; the restart is a new ConsumerSessions with a ledger that
 * lacks the answers, as a node killed before they came has.
 */
import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { afterAll, expect, it } from 'vitest'
import { Ledger } from '../../src/accounting/ledger.ts'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import { DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import { waitFor } from '../utils/cli.ts'
import { nodesWithLedgers, startSessions } from './sessions-pair.ts'

const MiB = 1024 * 1024
const cleanups: Array<() => Promise<void>> = []
afterAll(async () => { for (const c of cleanups.reverse()) await c() })

it('a restarted consumer gets back, with its next session\'s hello, the countersigned receipts its ledger lacks', async () => {
  const { dir, keys, nodes, ledgers, stop } = await nodesWithLedgers('sb-catch-up-')
  cleanups.push(stop)
  const { exit, consumer } = await startSessions(keys, nodes, ledgers, { creditLimitMicro: -(10n ** 12n) })
  const [exitPeer, consumerPeer] = [nodes[0].peerId, nodes[1].peerId]
  const first = consumer.sessionFor(exitPeer)
  const atExit = (id: string): bigint | undefined => ledgers[0].receipts().find(x => x.receipt.sessionId === id)?.receipt.seq

  // 3 MiB carried and signed for, the exit's ledger holds its receipts
  expect(exit.admit(consumerPeer, first)).toBeUndefined()
  void exit.meter(consumerPeer, first, 'down', 3 * MiB)
  consumer.meter(exitPeer, 'down', 3 * MiB)
  await waitFor(() => (atExit(first) ?? 0n) >= 1n && consumer.pendingBytes() === 0, { what: 'the receipts at the exit' })
  await consumer.stop()

  // the restarted consumer's ledger lacks them (its answers were on the way when it was killed)
  const lost = Ledger.open(join(dir, 'restarted.db'), { selfPeerId: consumerPeer })
  cleanups.push(async () => { lost.close() })
  const restarted = new ConsumerSessions({ logger: defaultLogger(), dialProtocol: async (peer, protocol, options) => nodes[1].dialProtocol(peer, protocol, options) },
    { ledger: lost, privateKey: keys[1], priceOf: () => DEFAULT_PRICE_PER_GB_MICRO, pow: () => ({ nonce: 0n, difficulty: 0 }) })
  restarted.start()
  cleanups.push(async () => { await restarted.stop() })
  expect(lost.receipts()).toEqual([])
  // its next tunnel to the exit: a new session, whose hello's answer brings the first one's newest receipt
  const second = restarted.sessionFor(exitPeer)
  expect(second).not.toBe(first)
  expect(exit.admit(consumerPeer, second)).toBeUndefined()
  await restarted.prepare(exitPeer)
  const got = await waitFor(() => { lost.flush(); return lost.receipts().find(x => x.receipt.sessionId === first) }, { timeoutMs: 5000, what: 'the first session\'s receipt in the restarted ledger' })
  expect(got?.receipt.seq).toBe(atExit(first))
  expect(got?.receipt.bytesDown).toBe(BigInt(3 * MiB))
  // and counted as spent there, as at the exit
  expect(lost.balance().spentMicro).toBe(ledgers[0].balance(consumerPeer).spentMicro)
})
