/**
 * The consumer's "out of credit" warning (status().warnings, and the start
 * log once it appears): from its own ledger, a real file.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Ledger } from '../../src/accounting/ledger.ts'
import { creditWarning } from '../../src/node/accounting-report.ts'
import { countersigned, parties } from '../accounting/fixtures.ts'
import type { Party } from '../accounting/fixtures.ts'

// the fixtures' price: a micro-credit per 1000 bytes; this allowance pays for 2,000,000 bytes
const ALLOWANCE = 2_000n

let consumer: Party
let exit: Party
let dir: string
beforeAll(async () => { [consumer, exit] = await parties(2) })
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'sb-credit-warning-')) })
afterEach(() => { rmSync(dir, { recursive: true, force: true, maxRetries: 5 }) })

describe('creditWarning', () => {
  it('says nothing while the balance is above zero, and what the balance is made of, and how to earn, once it is not', async () => {
    const ledger = Ledger.open(join(dir, 'ledger.db'), { selfPeerId: peerIdFromPrivateKey(consumer.key), powDifficulty: 0, allowanceMicro: ALLOWANCE })
    try {
      ledger.recordPow(peerIdFromPrivateKey(consumer.key), 0n, 0)
      await ledger.recordReceipt(await countersigned(consumer, exit, { sessionId: 's', seq: 1n, bytesUp: 0n, bytesDown: 1_500_000n }), 'own')
      expect(creditWarning(ledger.balance(), true)).toBeUndefined()
      await ledger.recordReceipt(await countersigned(consumer, exit, { sessionId: 's', seq: 2n, bytesUp: 0n, bytesDown: 2_500_000n }), 'own')
      const supplying = creditWarning(ledger.balance(), true)
      expect(supplying).toMatch(/^out of credit: balance -0\.0005 \(allowance 0\.002 \+ earned 0 - spent 0\.0025\); this node opens no tunnel \(HTTP 402, SOCKS5 0x02\) and ends its open ones while its balance is not above accounting\.stop_at_balance \(0\), and exits refuse it too;/)
      // a node told to go on into the credit exits extend says who stops it then
      // exits whose operators lowered their credit limit (the README's longer try-out) still carry it: said so, not "exits refuse"
      expect(creditWarning(ledger.balance(), true, -1_000n)).toMatch(/; exits at the default credit limit \(0\) refuse this node's new tunnels \(HTTP 402, SOCKS5 0x02\) and close the open ones once what they carried is used up; exits whose operators set a lower accounting\.credit_limit carry it down to that \(accounting\.stop_at_balance -0\.001 lets this node go on until then\);/)
      expect(supplying).toMatch(/earns credit as an exit when others route traffic through it$/)
      // a stop above a balance that is still positive is the node's own: exits would carry it
      const atOwnStop = { ...ledger.balance(), balanceMicro: 500n }
      expect(creditWarning(atOwnStop, true, 1_000n)).toMatch(/accounting\.stop_at_balance \(0\.001\), and exits would still carry it \(at their default credit limit of 0\): the stop is its own;/)
      expect(creditWarning(ledger.balance(), false)).toMatch(/--no-supply \(exit\.enabled = false\) turns off$/)
    } finally {
      await ledger.close()
    }
  })
})
