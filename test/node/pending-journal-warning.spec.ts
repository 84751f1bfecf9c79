/**
 * A node whose ledger.db.pending ended in bytes that are no intact receipt
 * (a write a kill cut short, or damage): they are dropped at start, and
 * the operator is told so in status, where they went without a word.
 */
import { describe, it, expect } from 'vitest'
import { appendFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir } from '../utils/cli.ts'

describe('a damaged pending-receipt journal at start', () => {
  it('is dropped past its last intact record, and status says how much', async () => {
    const dataDir = await tempDir('sb-pending-warn-')
    const config = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { enabled: false }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } }
    const first = await createSparebandNode({ dataDir, config })
    await first.start()
    expect(first.status().warnings.filter(w => w.includes('.pending'))).toEqual([])
    await first.stop()
    await appendFile(join(dataDir, 'ledger.db.pending'), Buffer.from('garbage, not a record'))
    const second = await createSparebandNode({ dataDir, config })
    await second.start()
    try {
      expect(second.status().warnings.filter(w => w.includes('.pending'))).toEqual([`${join(dataDir, 'ledger.db')}.pending ended in 21 bytes that were no intact receipt at start (a write cut short by a kill, or damage), dropped after the 0 intact one(s) before them were written: receipts among them, if any, are still at their exits and in gossip`])
    } finally {
      await second.stop()
    }
  })
})
