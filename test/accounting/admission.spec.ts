/**
 * Who an exit lets in: a consumer needs a balance above the exit's credit
 * limit, and a new identity has one only once it has shown its proof of
 * work (the allowance). A real ExitSessions on a real ledger.
 */

import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ExitSessions } from '../../src/accounting/exit-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { solvePow } from '../../src/accounting/credits.ts'
import { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
import { tempDir } from '../utils/cli.ts'
import { countersigned, parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { PeerId } from '@libp2p/interface'

const DIFFICULTY = 4
const ALLOWANCE = 1_000_000n

describe('admission by credit', () => {
  let exitParty: Party, consumerParty: Party
  let consumer: PeerId
  let ledger: Ledger
  const exitWith = (creditLimitMicro?: bigint): ExitSessions => new ExitSessions({ logger: defaultLogger() }, {
    ledger, privateKey: exitParty.key, pricePerGbMicro: 1_000_000n, powDifficulty: DIFFICULTY, creditLimitMicro
  })

  beforeEach(async () => {
    [exitParty, consumerParty] = await parties(2)
    consumer = peerIdFromPrivateKey(consumerParty.key)
    ledger = Ledger.open(join(await tempDir('sb-admission-'), 'ledger.db'), { selfPeerId: peerIdFromPrivateKey(exitParty.key), powDifficulty: DIFFICULTY, allowanceMicro: ALLOWANCE })
  })
  afterEach(() => { ledger.close() })

  it('refuses a new identity with no proof of work on record, saying so', () => {
    const refusal = exitWith().admit(consumer, 's1')
    expect(refusal?.status).toBe(TunnelStatus.INSUFFICIENT_CREDIT)
    expect(refusal?.message).toMatch(/no proof of work/)
  })

  it('lets it in once its proof of work is recorded, and refuses it again when the allowance is spent', async () => {
    ledger.recordPow(consumer, await solvePow(consumerParty.bytes, DIFFICULTY), DIFFICULTY)
    const exit = exitWith()
    expect(exit.admit(consumer, 's1')).toBeUndefined()
    // a receipt that spends exactly the allowance (1 GB at 1 credit per GB): nothing left
    await ledger.recordReceipt(await countersigned(consumerParty, exitParty, { sessionId: 's1', bytesUp: 0n, bytesDown: 1_000_000_000n }), 'own')
    expect(ledger.balance(consumer).balanceMicro).toBe(0n)
    const refusal = exit.admit(consumer, 's2')
    expect(refusal?.status).toBe(TunnelStatus.INSUFFICIENT_CREDIT)
    expect(refusal?.message).toBe('balance 0 credits, as this exit\'s ledger has it, is not above its credit limit of 0')
  })

  it('lets anyone in on credit when the operator sets a negative limit', async () => {
    expect(exitWith(-1n).admit(consumer, 's1')).toBeUndefined()
  })
})
