import { describe, it, expect } from 'vitest'
import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { tempDir } from '../utils/cli.ts'
import { parties } from './fixtures.ts'

/**
 * A node whose start failed is stopped, which ends its proof-of-work solve
 * (and settles the wait for it), and may be started again, with a new
 * solve. Tunnels of the second start must wait for the second solve, not
 * take the first one's settled wait as "solved".
 */
describe('the consumer\'s wait for its proof of work across a stop and a new start', () => {
  it('waits again after a restart, for the new solve', async () => {
    const [me, exit] = await parties(2)
    const ledger = Ledger.open(join(await tempDir('sb-pow-restart-'), 'ledger.db'), { selfPeerId: peerIdFromPrivateKey(me.key) })
    let solved: Promise<void> = Promise.resolve() // the first start's solve, ended by its stop
    const consumer = new ConsumerSessions({
      logger: defaultLogger(),
      dialProtocol: async () => { throw new Error('no exit in this test') }
    }, { ledger, privateKey: me.key, pow: () => undefined, powSolved: () => solved, powWaitMs: 5_000 })
    const exitId = peerIdFromPrivateKey(exit.key)
    try {
      consumer.start()
      await consumer.prepare(exitId)
      await consumer.stop()

      // the second start solves anew: its tunnels wait until that solve ends
      let finish: () => void = () => {}
      solved = new Promise<void>(resolve => { finish = resolve })
      consumer.start()
      let waited = true
      const prepared = consumer.prepare(exitId).then(() => { waited = false })
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(waited).toBe(true)
      finish()
      await prepared
      expect(waited).toBe(false)
    } finally {
      await consumer.stop()
      await ledger.close()
    }
  })
})
