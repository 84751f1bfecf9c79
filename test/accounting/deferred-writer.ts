/**
 * Child process for the kill test in pending-journal.spec.ts: hands
 * countersigned receipts to recordLater() (the consumer's batched path) as
 * fast as it can and prints `<receipt id> <seq>` as soon as each call has
 * returned, without waiting for its batch, until it is killed.
 *
 *   node --experimental-transform-types test/accounting/deferred-writer.ts <ledger file>
 */
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Ledger } from '../../src/accounting/ledger.ts'
import { countersigned, parties } from './fixtures.ts'
import { receiptId } from '../../src/accounting/receipts.ts'

const [consumer, exit] = await parties(2)
const ledger = Ledger.open(process.argv[2], { selfPeerId: peerIdFromPrivateKey(consumer.key) })
for (let seq = 1n; ; seq++) {
  for (const sessionId of ['a', 'b', 'c']) {
    const r = await countersigned(consumer, exit, { sessionId, seq, bytesDown: seq * 1_000n, updatedAt: 1_700_000_000_000n + seq })
    ledger.recordLater(r).catch(() => {})
    process.stdout.write(`${receiptId(r)} ${seq}\n`)
  }
}
