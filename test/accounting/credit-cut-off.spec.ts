/**
 * When an exit closes a consumer's tunnels for want of credit: held with no
 * credit left, the consumer is cut off after a grace, unless its balance has
 * grown meanwhile (here: receipts of its own earnings, as gossip brings
 * them). A real ExitSessions on one libp2p node, a raw client speaking the
 * receipt protocol on another (TCP on loopback), a real ledger file.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { RECEIPT_PROTOCOL } from '../../src/constants.ts'
import { ExitSessions, MAX_SIGNED_AHEAD } from '../../src/accounting/exit-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { ReceiptStreamMessage } from '../../src/accounting/pb/receipt-stream.ts'
import { encodeReceipt, signAsConsumer } from '../../src/accounting/receipts.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { countersigned, party } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'

const PRICE = 1_000_000n // micro-credits per 10^9 bytes: a micro-credit pays for 1000 bytes
const ALLOWANCE = 2_000n // pays for 2,000,000 bytes
const GRACE_MS = 300

describe('cutting off a consumer with no credit left', () => {
  let dir: string
  let keys: PrivateKey[]
  let exitNode: Libp2p
  let client: Libp2p
  let ledger: Ledger
  let exit: ExitSessions
  let cutOff: Array<{ consumer: PeerId, reason: string }>

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-cut-off-'))
    keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    ;[exitNode, client] = await Promise.all([loopbackNode(keys[0]), loopbackNode(keys[1])])
    ledger = Ledger.open(join(dir, 'exit.db'), { selfPeerId: exitNode.peerId, powDifficulty: 0, allowanceMicro: ALLOWANCE })
    // a 0-bit proof (nonce 0 meets it): the client has its allowance
    ledger.recordPow(client.peerId, 0n, 0)
    exit = new ExitSessions({ logger: defaultLogger() }, { ledger, privateKey: keys[0], pricePerGbMicro: PRICE, powDifficulty: 0, cutOffGraceMs: GRACE_MS })
    cutOff = []
    exit.setCutOff((consumer, reason) => { cutOff.push({ consumer, reason }) })
    await exit.start(exitNode)
    await client.dial(exitNode.getMultiaddrs()[0])
  })
  afterEach(async () => {
    await exit?.stop()
    await client?.stop()
    await exitNode?.stop()
    ledger?.close()
    await rm(dir, { recursive: true, force: true, maxRetries: 5 })
  })

  /** The client signs its first receipt of `sessionId` for `bytesDown` and the exit countersigns it. */
  async function sendReceipt (sessionId: string, bytesDown: bigint): Promise<void> {
    const r = encodeReceipt(await signAsConsumer({
      sessionId,
      consumer: client.peerId.toMultihash().bytes,
      exit: exitNode.peerId.toMultihash().bytes,
      bytesUp: 0n,
      bytesDown,
      seq: 1n,
      // now, as a consumer's would be: an exit refuses a start long before it saw the session
      startedAt: BigInt(Date.now()),
      updatedAt: BigInt(Date.now() + 1),
      pricePerGb: PRICE
    }, keys[1]))
    const stream = await client.dialProtocol(exitNode.peerId, RECEIPT_PROTOCOL)
    const lp = lpStream(stream)
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(r) }))
    const answer = ReceiptStreamMessage.decode(await lp.read({ signal: AbortSignal.timeout(5000) }))
    expect(answer.error).toBeUndefined()
    await stream.close()
  }

  /** Carries the whole allowance's worth, has the client sign for it, then carries a little more: held with nothing left. */
  async function spendAndHold (): Promise<{ hold: Promise<void> }> {
    expect(exit.admit(client.peerId, 's')).toBeUndefined()
    expect(exit.meter(client.peerId, 's', 'down', 2_000_000)).toBeUndefined()
    await sendReceipt('s', 2_000_000n)
    expect(ledger.balance(client.peerId).balanceMicro).toBe(0n)
    // a thousand bytes more, which nothing pays for: held
    const hold = exit.meter(client.peerId, 's', 'down', 1_000)
    expect(hold).toBeInstanceOf(Promise)
    // wrapped: an async function returning the promise itself would wait for it
    return { hold: hold! }
  }

  it('closes its tunnels after the grace when no credit comes, and lets the held chunks go to be dropped', async () => {
    const { hold } = await spendAndHold()
    await new Promise(resolve => setTimeout(resolve, GRACE_MS / 2))
    expect(cutOff).toEqual([])
    await hold
    expect(cutOff).toHaveLength(1)
    expect(cutOff[0].consumer.equals(client.peerId)).toBe(true)
    expect(cutOff[0].reason).toMatch(/out of credit/)
  })

  it('lets it go on when its balance grew meanwhile (its earnings, by gossip), and cuts nothing', async () => {
    const { hold } = await spendAndHold()
    // the client earned 5 micro-credits as an exit from a funded consumer: that pays for 5,000 bytes
    const payer: Party = await party()
    ledger.recordPow(payer.bytes, 0n, 0)
    const clientParty: Party = { key: keys[1], bytes: client.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, id: client.peerId.toString() }
    await ledger.recordReceipt(await countersigned(payer, clientParty, { sessionId: 'earned', bytesUp: 0n, bytesDown: 5_000n, pricePerGb: PRICE }), 'gossip')
    await hold
    expect(cutOff).toEqual([])
    // the room is what the new balance pays for: 4,000 more bytes go on, a further 2,000 are held again
    expect(exit.meter(client.peerId, 's', 'down', 3_000)).toBeUndefined()
    expect(exit.meter(client.peerId, 's', 'down', 2_000)).toBeInstanceOf(Promise)
  })

  it('holds a consumer that signed far ahead of what was carried once its credit is gone, instead of carrying it without end', async () => {
    expect(exit.admit(client.peerId, 'ahead')).toBeUndefined()
    expect(exit.meter(client.peerId, 'ahead', 'down', 1_000)).toBeUndefined()
    // a receipt for a GiB, of which 1,000 bytes were carried (as far ahead as the exit lets a receipt run:
    // uploads on the way): it costs far more than the allowance, so the ledger is left owed; the exit
    // must not take it as leave to carry that GiB
    await sendReceipt('ahead', BigInt(2_000 + MAX_SIGNED_AHEAD))
    expect(ledger.balance(client.peerId).balanceMicro).toBeLessThan(0n)
    // 64 MiB more on the open tunnel: the balance pays for none of it, so it is held well before that
    let carried = 0
    let held: Promise<void> | undefined
    while (held == null && carried < 64 * 1024 * 1024) {
      held = exit.meter(client.peerId, 'ahead', 'down', 64 * 1024)
      carried += 64 * 1024
    }
    expect(held).toBeInstanceOf(Promise)
    expect(carried).toBeLessThanOrEqual(exit.threshold + 64 * 1024)
    await held
    expect(cutOff).toHaveLength(1)
  })
})
