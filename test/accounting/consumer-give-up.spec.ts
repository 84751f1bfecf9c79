/**
 * The consumer's sessions end with the exits they go to: a session whose
 * exit vanished before its receipt (stopped, crashed, unreachable) is closed
 * after DEFAULT_UNSIGNED_GIVE_UP_MS without traffic, rather than kept, with
 * a dial a second, for every exit that ever went away owing us a receipt.
 * A real ConsumerSessions on a real ledger, with an exit nobody can reach
 * and a clock moved by hand.
 */

import { describe, it, expect } from 'vitest'
import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ConsumerSessions, DEFAULT_UNSIGNED_GIVE_UP_MS } from '../../src/accounting/consumer-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { tempDir } from '../utils/cli.ts'
import { parties } from './fixtures.ts'

describe('consumer sessions whose exit vanished', () => {
  it('are closed after the give-up time without traffic, and not before', async () => {
    const [me, ...exits] = await parties(4)
    const ledger = Ledger.open(join(await tempDir('sb-giveup-'), 'ledger.db'), { selfPeerId: peerIdFromPrivateKey(me.key) })
    let clock = 1_700_000_000_000
    let dials = 0
    const consumer = new ConsumerSessions({
      logger: defaultLogger(),
      dialProtocol: async () => { dials++; throw new Error('the exit is gone') }
    }, { ledger, privateKey: me.key, now: () => clock })
    const tick = (): void => { (consumer as any).tick() }
    const sessions = (consumer as any).sessions as Map<string, unknown>
    try {
      // a tunnel through each exit carried some bytes; then the exits went away before any receipt
      for (const e of exits) {
        const exit = peerIdFromPrivateKey(e.key)
        const id = consumer.sessionFor(exit)
        consumer.meter(exit, 'down', 300_000)
        consumer.release(exit, id)
      }
      expect(sessions.size).toBe(3)
      // a receipt is tried every tick while the exit may come back (a restart)
      for (let t = 0; t < 9; t++) {
        clock += 60_000
        tick()
        await new Promise(resolve => setTimeout(resolve, 5))
      }
      expect(dials).toBeGreaterThan(0)
      expect(sessions.size).toBe(3)
      expect(consumer.pendingBytes()).toBe(900_000)
      // past the give-up time: closed, and no more dials
      clock += DEFAULT_UNSIGNED_GIVE_UP_MS - 8 * 60_000
      tick()
      await new Promise(resolve => setTimeout(resolve, 20))
      expect(sessions.size).toBe(0)
      expect(consumer.pendingBytes()).toBe(0)
      const after = dials
      clock += 60_000
      tick()
      await new Promise(resolve => setTimeout(resolve, 5))
      expect(dials).toBe(after)
    } finally {
      await consumer.stop()
      ledger.close()
    }
  })
})
