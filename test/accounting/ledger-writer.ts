/**
 * Child process for the kill test in ledger.spec.ts: records countersigned
 * receipts as fast as it can and prints `<receipt id> <seq>` after each
 * recordReceipt() returns, until it is killed.
 *
 *   node --experimental-transform-types test/accounting/ledger-writer.ts <ledger file>
 */
import { Ledger } from '../../src/accounting/ledger.ts'
import { countersigned, parties } from './fixtures.ts'
import { receiptId } from '../../src/accounting/receipts.ts'

const [consumer, exit] = await parties(2)
const ledger = Ledger.open(process.argv[2])
for (let seq = 1n; ; seq++) {
  for (const sessionId of ['a', 'b', 'c']) {
    const r = await countersigned(consumer, exit, { sessionId, seq, bytesDown: seq * 1_000n, updatedAt: 1_700_000_000_000n + seq })
    await ledger.recordReceipt(r, 'gossip')
    process.stdout.write(`${receiptId(r)} ${seq}\n`)
  }
}
