/**
 * The receipt topic's validator, and what a rejection costs the sender:
 * first ReceiptGossip.validate() on a real ledger file, then two real nodes
 * on TCP loopback where one publishes forged receipts to the other.
 */

import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import fc from 'fast-check'
import { join } from 'node:path'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { ReceiptGossip, decodeGossipMessage, encodeGossipMessage } from '../../src/accounting/gossip.ts'
import { encodePowNonce, solvePow } from '../../src/accounting/credits.ts'
import { DEFAULT_POW_DIFFICULTY } from '../../src/accounting/constants.ts'
import { Receipt as ReceiptMessage, ReceiptGossipExtension } from '../../src/accounting/pb/receipt.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { encodeReceipt } from '../../src/accounting/receipts.ts'
import { createSparebandNode } from '../../src/index.ts'
import { INVALID_RECEIPT_WEIGHT } from '../../src/node/gossip-scoring.ts'
import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tempDir, waitFor } from '../utils/cli.ts'
import { countersigned, parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { SparebandNode } from '../../src/index.ts'

const TOPIC = 'spareband/receipts/1'
/** A proof-of-work difficulty that solves at once. */
const LIGHT = 8

/** A validly countersigned receipt with one byte of the consumer's signature flipped. */
async function forged (consumer: Party, exit: Party, sessionId: string): Promise<Uint8Array> {
  const r = await countersigned(consumer, exit, { sessionId })
  const sig = Uint8Array.from(r.consumerSig)
  sig[7] ^= 0x01
  return encodeReceipt({ ...r, consumerSig: sig })
}

describe('receipt gossip validator', () => {
  let alice: Party, bob: Party
  let ledger: Ledger
  let gossip: ReceiptGossip

  beforeAll(async () => {
    [alice, bob] = await parties(2)
    // a light difficulty, and alice (the consumer of most receipts here) showed her proof before
    ledger = Ledger.open(join(await tempDir('sb-gossip-'), 'ledger.db'), { powDifficulty: LIGHT })
    ledger.recordPow(alice.bytes, await solvePow(alice.bytes, LIGHT), LIGHT)
    // validate() reads only the ledger: the pubsub is used by start() and publish(), not here
    gossip = new ReceiptGossip({ pubsub: undefined as unknown as GossipSub, topic: TOPIC, ledger, logger: defaultLogger() })
  })
  afterAll(() => { ledger.close() })

  const held = (sessionId: string): bigint | undefined => ledger.receipts().find(r => r.receipt.sessionId === sessionId)?.receipt.seq

  it('accepts a new valid receipt into the ledger, and ignores a copy and an older one', async () => {
    const first = await countersigned(alice, bob, { sessionId: 'v', seq: 1n })
    const second = await countersigned(alice, bob, { sessionId: 'v', seq: 2n, bytesDown: 90_000n, updatedAt: 1_700_000_009_000n })
    expect(await gossip.validate(encodeReceipt(first))).toBe(TopicValidatorResult.Accept)
    expect(await gossip.validate(encodeReceipt(second))).toBe(TopicValidatorResult.Accept)
    expect(held('v')).toBe(2n)
    expect(await gossip.validate(encodeReceipt(second))).toBe(TopicValidatorResult.Ignore)
    expect(await gossip.validate(encodeReceipt(first))).toBe(TopicValidatorResult.Ignore)
    expect(held('v')).toBe(2n)
  })

  it('rejects forged, tampered and malformed receipts, and stores none of them', async () => {
    const before = { ...gossip.stats }
    const tampered = encodeReceipt(await countersigned(alice, bob, { sessionId: 't' }))
    tampered[tampered.length - 70] ^= 0x01 // inside the signatures or the counters: either way no longer what was signed
    const badExitSig = await countersigned(alice, bob, { sessionId: 'x' })
    const exitSig = Uint8Array.from(badExitSig.exitSig)
    exitSig[0] ^= 0x80
    for (const bytes of [await forged(alice, bob, 'f'), tampered, encodeReceipt({ ...badExitSig, exitSig }), Uint8Array.from([0x0a, 0xff, 0x01]), new Uint8Array(0)]) {
      expect(await gossip.validate(bytes)).toBe(TopicValidatorResult.Reject)
    }
    expect(gossip.stats.rejected - before.rejected).toBe(5)
    expect(gossip.stats.accepted).toBe(before.accepted)
    for (const id of ['f', 't', 'x']) expect(held(id)).toBeUndefined()
  })

  it('tells who forwarded each receipt it rejects (the operator\'s notices), and nothing of those it takes', async () => {
    const told: Array<[string, string]> = []
    const validator = new ReceiptGossip({ pubsub: undefined as unknown as GossipSub, topic: TOPIC, ledger, logger: defaultLogger(), onReject: (from, reason) => told.push([from.toString(), reason]) })
    const sender = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    expect(await validator.validate(await forged(alice, bob, 'told-1'), sender)).toBe(TopicValidatorResult.Reject)
    expect(await validator.validate(encodeReceipt(await countersigned(alice, bob, { sessionId: 'told-2' })), sender)).toBe(TopicValidatorResult.Accept)
    expect(told).toHaveLength(1)
    expect(told[0][0]).toBe(sender.toString())
    expect(told[0][1]).toMatch(/signature/i)
  })

  it('ignores, not rejects, a second validly signed version of a receipt: the forwarder may have got it first', async () => {
    const one = await countersigned(alice, bob, { sessionId: 'c', seq: 5n, bytesDown: 1_000n })
    const other = await countersigned(alice, bob, { sessionId: 'c', seq: 5n, bytesDown: 2_000n })
    expect(await gossip.validate(encodeReceipt(one))).toBe(TopicValidatorResult.Accept)
    expect(await gossip.validate(encodeReceipt(other))).toBe(TopicValidatorResult.Ignore)
    expect(ledger.receipts().find(r => r.receipt.sessionId === 'c')?.receipt.bytesDown).toBe(1_000n)
  })

  it('ignores, without blaming the sender, receipts of a session its ledger has pruned, and credits them no more', async () => {
    const day = 86_400_000
    let clock = Date.now() - 40 * day
    const pruning = Ledger.open(join(await tempDir('sb-gossip-prune-'), 'ledger.db'), { now: () => clock, gossipRetentionMs: 30 * day, powDifficulty: LIGHT })
    pruning.recordPow(alice.bytes, ledger.pow(alice.bytes)!.nonce, LIGHT)
    const validator = new ReceiptGossip({ pubsub: undefined as unknown as GossipSub, topic: TOPIC, ledger: pruning, logger: defaultLogger() })
    const startedAt = BigInt(clock)
    const last = await countersigned(alice, bob, { sessionId: 'pruned', seq: 2n, startedAt, updatedAt: startedAt + 60_000n })
    const next = await countersigned(alice, bob, { sessionId: 'pruned', seq: 3n, bytesDown: 90_000n, startedAt, updatedAt: startedAt + 120_000n })
    expect(await validator.validate(encodeReceipt(last))).toBe(TopicValidatorResult.Accept)
    clock = Date.now()
    expect(pruning.pruneGossip()).toBe(1)
    const carried = pruning.balance(bob.bytes).bytesCarried
    expect(await validator.validate(encodeReceipt(last))).toBe(TopicValidatorResult.Ignore)
    expect(await validator.validate(encodeReceipt(next))).toBe(TopicValidatorResult.Ignore)
    expect(validator.stats).toMatchObject({ accepted: 1, ignored: 2, rejected: 0 })
    expect(pruning.balance(bob.bytes).bytesCarried).toBe(carried)
    pruning.close()
  })

  it('ignores a receipt dated more than an hour ahead of its clock, without blaming the sender', async () => {
    const future = await countersigned(alice, bob, { sessionId: 'future', startedAt: BigInt(Date.now()), updatedAt: BigInt(Date.now() + 2 * 3600_000) })
    const soon = await countersigned(alice, bob, { sessionId: 'soon', startedAt: BigInt(Date.now()), updatedAt: BigInt(Date.now() + 60_000) })
    expect(await gossip.validate(encodeReceipt(future))).toBe(TopicValidatorResult.Ignore)
    expect(held('future')).toBeUndefined()
    // a clock a minute ahead is within what is taken
    expect(await gossip.validate(encodeReceipt(soon))).toBe(TopicValidatorResult.Accept)
  })

  it("credits the exit from the consumer's allowance when the consumer's proof of work comes along, and rejects a bad proof", async () => {
    const [consumer, exit] = await parties(2)
    const pow = { nonce: await solvePow(consumer.bytes, DEFAULT_POW_DIFFICULTY), difficulty: DEFAULT_POW_DIFFICULTY }
    const r = await countersigned(consumer, exit, { sessionId: 'p', bytesUp: 0n, bytesDown: 1_000_000n, pricePerGb: 1_000_000n })
    const message = encodeGossipMessage(r, pow)
    expect(decodeGossipMessage(message)).toEqual({ receipt: r, consumerPow: pow })
    expect(decodeGossipMessage(encodeReceipt(r))).toEqual({ receipt: r })
    // read as a plain receipt, the message is that receipt: the extra fields are skipped
    expect(ReceiptMessage.decode(message)).toEqual(r)

    // the same receipt without the proof, to a node that never saw one: a throw-away consumer as far as it knows, not taken
    const without = Ledger.open(':memory:')
    const plain = new ReceiptGossip({ pubsub: undefined as unknown as GossipSub, topic: TOPIC, ledger: without, logger: defaultLogger() })
    expect(await plain.validate(encodeReceipt(r))).toBe(TopicValidatorResult.Ignore)
    expect(plain.stats).toMatchObject({ accepted: 0, ignored: 1, ignoredNoProof: 1, rejected: 0 })
    expect(without.receipts()).toEqual([])
    // the copy with the proof, later (a copy without it can reach a node first): taken, and paid from the allowance
    expect(await plain.validate(message)).toBe(TopicValidatorResult.Accept)
    expect(without.balance(exit.bytes)).toMatchObject({ earnedMicro: 1_000n, unpaidMicro: 0n })
    // once the proof is known here, copies without it are taken too
    expect(await plain.validate(encodeReceipt(await countersigned(consumer, exit, { sessionId: 'p2' })))).toBe(TopicValidatorResult.Accept)
    without.close()

    const before = { ...gossip.stats }
    const bad = encodeGossipMessage(r, { nonce: pow.nonce + 1n, difficulty: DEFAULT_POW_DIFFICULTY })
    const ext = ReceiptGossipExtension.encode({ consumerPowNonce: encodePowNonce(pow.nonce), consumerPowDifficulty: pow.difficulty })
    const receiptBytes = encodeReceipt(r)
    const inFront = Uint8Array.from([...ext, ...receiptBytes])
    const halfProof = Uint8Array.from([...receiptBytes, ...ReceiptGossipExtension.encode({ consumerPowDifficulty: 20 })])
    const shortNonce = Uint8Array.from([...receiptBytes, ...ReceiptGossipExtension.encode({ consumerPowNonce: Uint8Array.from([1, 2, 3]), consumerPowDifficulty: 20 })])
    for (const m of [bad, inFront, halfProof, shortNonce]) expect(await gossip.validate(m)).toBe(TopicValidatorResult.Reject)
    expect(gossip.stats.rejected - before.rejected).toBe(4)
    expect(ledger.pow(consumer.bytes)).toBeUndefined()
    expect(held('p')).toBeUndefined()

    // a sound proof too weak for an allowance here: neither the receipt nor the proof is kept
    const [weakConsumer, weakExit] = await parties(2)
    const weak = { nonce: await solvePow(weakConsumer.bytes, 4), difficulty: 4 }
    expect(await gossip.validate(encodeGossipMessage(await countersigned(weakConsumer, weakExit, { sessionId: 'w' }), weak))).toBe(TopicValidatorResult.Ignore)
    expect(ledger.pow(weakConsumer.bytes)).toBeUndefined()
    expect(held('w')).toBeUndefined()

    expect(await gossip.validate(message)).toBe(TopicValidatorResult.Accept)
    expect(ledger.pow(consumer.bytes)).toEqual(pow)
    expect(ledger.balance(exit.bytes)).toMatchObject({ earnedMicro: 1_000n, unpaidMicro: 0n })
  })

  it('fuzz: any bytes, or a valid message with a byte changed, cut or extended, get an answer and never a crash', async () => {
    const [consumer, exit] = await parties(2)
    const pow = { nonce: await solvePow(consumer.bytes, 4), difficulty: 4 }
    const valid = encodeGossipMessage(await countersigned(consumer, exit, { sessionId: 'fuzz' }), pow)
    const answers = new Set<TopicValidatorResult>()
    await fc.assert(fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 1200 }),
        fc.record({ pos: fc.nat({ max: valid.byteLength - 1 }), byte: fc.integer({ min: 0, max: 255 }) }).map(({ pos, byte }) => {
          const b = valid.slice()
          b[pos] = byte
          return b
        }),
        fc.nat({ max: valid.byteLength }).map(n => valid.slice(0, n)),
        fc.uint8Array({ minLength: 1, maxLength: 40 }).map(tail => Uint8Array.from([...valid, ...tail]))
      ),
      async (bytes) => {
        try {
          decodeGossipMessage(bytes)
        } catch (err: any) {
          // a decoding failure is always the message's fault, named as such
          expect(err.name).toBe('ReceiptError')
        }
        const answer = await gossip.validate(bytes)
        expect([TopicValidatorResult.Accept, TopicValidatorResult.Ignore, TopicValidatorResult.Reject]).toContain(answer)
        answers.add(answer)
      }
    ), { numRuns: 300 })
    // junk is turned away (and the property above held for every input)
    expect(answers.has(TopicValidatorResult.Reject)).toBe(true)
  })

  it('takes no receipt of a throw-away consumer (no proof of work shown), however many, and blames no one', async () => {
    // a review minted a consumer and an exit key per receipt: 1,000 stored on every node in 2 s, rows kept for good
    const before = { ...gossip.stats }
    const rows = ledger.receipts().length
    for (let i = 0; i < 20; i++) {
      const [consumer, exit] = await parties(2)
      expect(await gossip.validate(encodeReceipt(await countersigned(consumer, exit, { sessionId: `sybil-${i}`, bytesDown: 10n ** 12n })))).toBe(TopicValidatorResult.Ignore)
    }
    expect(gossip.stats.ignoredNoProof - before.ignoredNoProof).toBe(20)
    expect(gossip.stats.rejected).toBe(before.rejected)
    expect(ledger.receipts()).toHaveLength(rows)
    // a key with no proof that earned here as an exit pays with that: its spending is taken (and so reaches the
    // others), or it could spend the same credit at every exit that admits it
    const [earner, itsExit] = await parties(2)
    expect(await gossip.validate(encodeReceipt(await countersigned(alice, earner, { sessionId: 'earned' })))).toBe(TopicValidatorResult.Accept)
    expect(ledger.balance(earner.bytes).earnedMicro).toBeGreaterThan(0n)
    expect(await gossip.validate(encodeReceipt(await countersigned(earner, itsExit, { sessionId: 'spends' })))).toBe(TopicValidatorResult.Accept)
    expect(ledger.balance(earner.bytes).spentMicro).toBeGreaterThan(0n)
    // with a difficulty of 0 a key costs nothing anyway: taken as before
    const free = Ledger.open(':memory:', { powDifficulty: 0 })
    const open = new ReceiptGossip({ pubsub: undefined as unknown as GossipSub, topic: TOPIC, ledger: free, logger: defaultLogger() })
    const [consumer, exit] = await parties(2)
    expect(await open.validate(encodeReceipt(await countersigned(consumer, exit, { sessionId: 'free' })))).toBe(TopicValidatorResult.Accept)
    free.close()
  })

  it('does not blame the sender when its own ledger fails (closed)', async () => {
    const closedLedger = Ledger.open(join(await tempDir('sb-gossip-closed-'), 'ledger.db'))
    closedLedger.close()
    const closed = new ReceiptGossip({ pubsub: undefined as unknown as GossipSub, topic: TOPIC, ledger: closedLedger, logger: defaultLogger() })
    expect(await closed.validate(encodeReceipt(await countersigned(alice, bob, { sessionId: 'l' })))).toBe(TopicValidatorResult.Ignore)
    expect(closed.stats).toMatchObject({ rejected: 0, ignored: 1 })
  })
})

describe('a peer that gossips forged receipts loses score, then is not heard', () => {
  const nodes: SparebandNode[] = []
  let honest: SparebandNode
  let forger: SparebandNode
  let consumer: Party, exit: Party
  let proof: { nonce: bigint, difficulty: number }
  afterAll(async () => { await Promise.all(nodes.map(async n => n.stop())) })
  /** A valid receipt as an honest exit gossips it: with its consumer's proof of work. */
  const valid = async (sessionId: string): Promise<Uint8Array> => encodeGossipMessage(await countersigned(consumer, exit, { sessionId }), proof)

  const make = async (bootstrap: string[]): Promise<SparebandNode> => {
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-gossip-node-'),
      controlApi: false,
      config: {
        region: 'de',
        listen: ['/ip4/127.0.0.1/tcp/0'],
        proxy: { socks_port: 0, http_port: 0 },
        network: { bootstrap, local_testnet: true },
        accounting: { pow_difficulty: LIGHT }
      }
    })
    nodes.push(node)
    await node.start()
    return node
  }
  const pubsub = (n: SparebandNode): GossipSub => n.libp2p.services.pubsub as GossipSub
  const gossipStats = (n: SparebandNode): { accepted: number, rejected: number, ignored: number } => (n.status() as any).accounting.gossip
  // getScore is on gossipsub's class, not on the interface it is typed as
  const scoreOfForger = (): number => (pubsub(honest) as unknown as { getScore: (peer: string) => number }).getScore(forger.peerId.toString())

  beforeAll(async () => {
    [consumer, exit] = await parties(2)
    proof = { nonce: await solvePow(consumer.bytes, LIGHT), difficulty: LIGHT }
    honest = await make([])
    forger = await make(honest.status().addresses)
    // the forger publishes straight to the topic: gossipsub does not validate a node's own messages
    await waitFor(() => pubsub(forger).getSubscribers(TOPIC).some(p => p.equals(honest.peerId)), { what: 'the forger to see the honest node on the receipt topic' })
  })

  it('a valid receipt from the peer is accepted and costs it nothing', async () => {
    await pubsub(forger).publish(TOPIC, await valid('good-1'))
    await waitFor(() => gossipStats(honest).accepted === 1, { what: 'the valid receipt to be accepted' })
    expect(scoreOfForger()).toBeGreaterThanOrEqual(0)
  })

  it('each forged receipt is rejected and counts against the sender, squared', async () => {
    await pubsub(forger).publish(TOPIC, await forged(consumer, exit, 'bad-1'))
    await waitFor(() => gossipStats(honest).rejected === 1, { what: 'the first forged receipt to be rejected' })
    // gossipsub caches a score for up to a second
    const one = await waitFor(() => { const s = scoreOfForger(); return s < 0 ? s : undefined }, { what: 'the score to drop' }) as number
    // P4 = weight x (invalid deliveries)^2, less the small rewards: at most +1 for the first delivery of good-1, a little for time in the mesh
    expect(one).toBeGreaterThan(INVALID_RECEIPT_WEIGHT - 0.01)
    expect(one).toBeLessThan(INVALID_RECEIPT_WEIGHT + 1.5)
    for (const id of ['bad-2', 'bad-3']) await pubsub(forger).publish(TOPIC, await forged(consumer, exit, id))
    await waitFor(() => gossipStats(honest).rejected === 3, { what: 'three forged receipts rejected' })
    // 9 x the weight: below gossipsub's graylist threshold (-80)
    const three = await waitFor(() => { const s = scoreOfForger(); return s < one ? s : undefined }, { what: 'the score to drop further' }) as number
    expect(three).toBeLessThan(INVALID_RECEIPT_WEIGHT * 9 + 1.5)
    expect(three).toBeLessThan(-80)
  })

  it('once graylisted, even its valid receipts go unheard', async () => {
    const accepted = gossipStats(honest).accepted
    await pubsub(forger).publish(TOPIC, await valid('good-2'))
    // give it the time a delivery took above, several times over
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(gossipStats(honest).accepted).toBe(accepted)
    expect(gossipStats(honest).rejected).toBe(3)
  })
})
