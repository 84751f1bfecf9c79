/**
 * Receipts: encoding, signing and verification, and the monotonicity rules
 * of ReceiptTracker. Errors are asserted by name and code, never message.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import fc from 'fast-check'
import { encode as varintEncode } from 'uint8-varint'
import { beforeAll, describe, expect, it } from 'vitest'
import { MAX_RECEIPT_BYTES, RECEIPT_SIGNATURE_DOMAIN } from '../../src/accounting/constants.ts'
import { ReceiptErrorCode } from '../../src/accounting/errors.ts'
import {
  ReceiptTracker, countersign, verifyAndCountersign, decodeReceipt, encodeReceipt, encodeReceiptProtobuf, receiptId, receiptSigningBytes,
  signAsConsumer, verifyCountersignature, verifyReceipt, countersignedAnswer, checkReceiptSignatures, madeHere
} from '../../src/accounting/receipts.ts'
import { body, caught, countersigned, parties, signed } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { CountersignedReceipt, Receipt } from '../../src/accounting/receipts.ts'

let consumer: Party
let exit: Party
let mallory: Party
let signedSync: Awaited<ReturnType<typeof signed>>

beforeAll(async () => {
  [consumer, exit, mallory] = await parties(3)
  signedSync = await signed(consumer, exit)
})

async function expectCode (fn: () => unknown, code: string): Promise<void> {
  const err = await caught(fn)
  expect(err.name).toBe('ReceiptError')
  expect(err.code).toBe(code)
}

describe('encoding and signing', () => {
  it('round-trips a countersigned receipt through the wire encoding', async () => {
    const r = await countersigned(consumer, exit)
    const decoded = decodeReceipt(encodeReceipt(r))
    expect(decoded).toEqual(r)
    const parties = await verifyReceipt(decoded)
    expect(parties.consumer.toString()).toBe(consumer.id)
    expect(parties.exit.toString()).toBe(exit.id)
  })

  it('signs the domain string followed by the encoding without signatures', async () => {
    const r = await countersigned(consumer, exit)
    const bytes = receiptSigningBytes(r)
    const domain = new TextEncoder().encode(RECEIPT_SIGNATURE_DOMAIN)
    expect(bytes.subarray(0, domain.byteLength)).toEqual(domain)
    expect(bytes.subarray(domain.byteLength)).toEqual(encodeReceiptProtobuf(body(consumer, exit)))
    // identical whether or not signatures are present
    expect(receiptSigningBytes(body(consumer, exit))).toEqual(bytes)
  })

  it('a consumer-signed receipt verifies without an exit signature only when allowed', async () => {
    const r = await signed(consumer, exit)
    await verifyReceipt(r, { requireExitSig: false })
    const err = await caught(async () => verifyReceipt(r))
    expect(err.code).toBe(ReceiptErrorCode.BAD_EXIT_SIGNATURE)
    expect(err.meta.missing).toBe(true)
  })

  it('only the consumer key signs as consumer, only the exit key countersigns', async () => {
    await expectCode(async () => signAsConsumer(body(consumer, exit), mallory.key), ReceiptErrorCode.WRONG_PEER)
    await expectCode(async () => countersign(await signed(consumer, exit), mallory.key), ReceiptErrorCode.WRONG_PEER)
  })

  it('countersign checks the consumer signature first', async () => {
    const forged = { ...body(consumer, exit), consumerSig: await mallory.key.sign(receiptSigningBytes(body(consumer, exit))) }
    await expectCode(async () => countersign(forged, exit.key), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE)
  })

  it('signatures are the ones the libp2p key itself makes (Ed25519 is deterministic), however often a key signs', async () => {
    for (let seq = 1n; seq <= 3n; seq++) {
      const r = await signed(consumer, exit, { seq })
      expect(r.consumerSig).toEqual(new Uint8Array(await consumer.key.sign(receiptSigningBytes(r))))
      const full = verifyAndCountersign(r, exit.key)
      expect(full.exitSig).toEqual(new Uint8Array(await exit.key.sign(receiptSigningBytes(r))))
      await verifyReceipt(full)
    }
    expect(() => verifyAndCountersign(signedSync, mallory.key)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.WRONG_PEER }))
    // it checks before it signs: a forged consumer signature, or a field changed after signing
    const forged = { ...signedSync, consumerSig: new Uint8Array(await mallory.key.sign(receiptSigningBytes(signedSync))) }
    expect(() => verifyAndCountersign(forged, exit.key)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE }))
    expect(() => verifyAndCountersign({ ...signedSync, bytesUp: signedSync.bytesUp + 1n }, exit.key)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE }))
  })

  it("the consumer's answer check: its own receipt plus a valid exit signature, nothing else", async () => {
    const mine = await signed(consumer, exit, { seq: 7n })
    const full = verifyAndCountersign(mine, exit.key)
    const parties = verifyCountersignature(decodeReceipt(encodeReceipt(full)), mine)
    expect(parties.exit.toString()).toBe(exit.id)
    // an exit signature by someone else
    const byMallory = { ...full, exitSig: new Uint8Array(await mallory.key.sign(receiptSigningBytes(full))) }
    expect(() => verifyCountersignature(byMallory, mine)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE }))
    // a countersigned receipt for other counters than we signed, validly signed by the exit
    const other = verifyAndCountersign(await signed(consumer, exit, { seq: 7n, bytesDown: mine.bytesDown + 1n }), exit.key)
    expect(() => verifyCountersignature(other, mine)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE }))
    // our signature swapped for another's over the same body
    const swapped = { ...full, consumerSig: new Uint8Array(await mallory.key.sign(receiptSigningBytes(full))) }
    expect(() => verifyCountersignature(swapped, mine)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE }))
    // no exit signature at all
    expect(() => verifyCountersignature({ ...full, exitSig: undefined }, mine)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE }))
  })

  it("countersignedAnswer: the exit's answer checked by its bytes, the exit signature left to the ledger", async () => {
    const mine = await signed(consumer, exit, { seq: 8n })
    const answer = encodeReceipt(verifyAndCountersign(decodeReceipt(encodeReceipt(mine)), exit.key))
    const full = countersignedAnswer(answer, mine)
    expect(Object.isFrozen(full)).toBe(true)
    expect(madeHere(full)).toBe(true)
    expect(encodeReceipt(full)).toEqual(answer)
    expect(checkReceiptSignatures(full).exit.toString()).toBe(exit.id)
    // ours with a signature by someone else: accepted here, refused by the signature check the ledger runs
    const byMallory = encodeReceipt({ ...mine, exitSig: new Uint8Array(await mallory.key.sign(receiptSigningBytes(mine))) })
    expect(() => checkReceiptSignatures(countersignedAnswer(byMallory, mine))).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE }))
    // validly countersigned, but other counters than we signed
    const other = encodeReceipt(verifyAndCountersign(await signed(consumer, exit, { seq: 8n, bytesDown: mine.bytesDown + 1n }), exit.key))
    expect(() => countersignedAnswer(other, mine)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE }))
    // ours, with no exit signature, a short one, or a byte too many
    expect(() => countersignedAnswer(encodeReceipt(mine), mine)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE }))
    expect(() => countersignedAnswer(answer.subarray(0, answer.byteLength - 1), mine)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE }))
    expect(() => countersignedAnswer(Uint8Array.from([...answer, 0]), mine)).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_EXIT_SIGNATURE }))
  })

  it('countersignedAnswer takes a receipt signed elsewhere, checked as decoding would check it, and an answer in a Buffer view', async () => {
    const mine = await signed(consumer, exit, { seq: 10n })
    const answer = encodeReceipt(verifyAndCountersign(mine, exit.key))
    // a copy of our receipt that receipts.ts did not make: nothing remembered, the same result
    const copy = { ...mine }
    expect(madeHere(copy)).toBe(false)
    expect(encodeReceipt(countersignedAnswer(answer, copy))).toEqual(answer)
    expect(checkReceiptSignatures(countersignedAnswer(answer, copy)).exit.toString()).toBe(exit.id)
    // such a copy with a field the wire could never carry is refused, as it would be by decoding
    expect(() => countersignedAnswer(answer, { ...mine, consumerSig: mine.consumerSig.subarray(0, 63) })).toThrow(expect.objectContaining({ code: ReceiptErrorCode.BAD_CONSUMER_SIGNATURE }))
    expect(() => countersignedAnswer(answer, { ...mine, seq: 10 as any })).toThrow(expect.objectContaining({ code: ReceiptErrorCode.MALFORMED }))
    // the answer as the network hands it: a view into a larger Buffer, at an offset
    const pool = Buffer.alloc(answer.byteLength + 100, 0xee)
    pool.set(answer, 37)
    const full = countersignedAnswer(pool.subarray(37, 37 + answer.byteLength), mine)
    pool.fill(0, 37)
    // the signature was copied out: changing the network buffer changes nothing
    expect(encodeReceipt(full)).toEqual(answer)
    expect(checkReceiptSignatures(full).consumer.toString()).toBe(consumer.id)
  })

  it('countersignedAnswer plus the signature check accepts exactly what decoding and verifyCountersignature accept', async () => {
    const mine = await signed(consumer, exit, { seq: 9n, bytesDown: 300_000_000n })
    const answer = encodeReceipt(verifyAndCountersign(mine, exit.key))
    const accepts = {
      byBytes: (bytes: Uint8Array): boolean => { try { checkReceiptSignatures(countersignedAnswer(bytes, mine)); return true } catch { return false } },
      decoded: (bytes: Uint8Array): boolean => { try { verifyCountersignature(decodeReceipt(bytes), mine); return true } catch { return false } }
    }
    expect(accepts.byBytes(answer)).toBe(true)
    fc.assert(fc.property(
      fc.array(fc.record({ at: fc.nat(answer.byteLength), value: fc.integer({ min: 0, max: 255 }), op: fc.constantFrom('set', 'insert', 'delete') }), { minLength: 1, maxLength: 3 }),
      edits => {
        const bytes = [...answer]
        for (const e of edits) {
          const at = Math.min(e.at, bytes.length - (e.op === 'insert' ? 0 : 1))
          if (e.op === 'set') bytes[at] = e.value
          else if (e.op === 'insert') bytes.splice(at, 0, e.value)
          else bytes.splice(at, 1)
        }
        const edited = Uint8Array.from(bytes)
        expect(accepts.byBytes(edited)).toBe(accepts.decoded(edited))
      }
    ), { numRuns: 2000 })
  })

  it('receipt ids are 64 hex digits keyed by consumer, exit and session id', async () => {
    const r = body(consumer, exit)
    expect(receiptId(r)).toMatch(/^[0-9a-f]{64}$/)
    expect(receiptId({ ...r, seq: 9n })).toBe(receiptId(r))
    expect(receiptId({ ...r, sessionId: 'session-2' })).not.toBe(receiptId(r))
    expect(receiptId(body(exit, consumer))).not.toBe(receiptId(r))
  })
})

describe('uint64 encoding', () => {
  // protons-runtime 7.1.2 writes [2^31, 2^32) wrongly; encodeReceiptProtobuf works around it
  const edges = [0n, 1n, 127n, 128n, (1n << 31n) - 1n, 1n << 31n, (1n << 31n) + 5n, (1n << 32n) - 1n, 1n << 32n,
    (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 63n) - 1n, (1n << 64n) - 1n]

  it('round-trips every edge value through the generated decoder', () => {
    for (const v of edges) {
      const bytes = encodeReceiptProtobuf({ bytesUp: v })
      expect(bytes[0]).toBe(0x20)
      if (v <= BigInt(Number.MAX_SAFE_INTEGER)) expect(bytes.subarray(1)).toEqual(varintEncode(Number(v)))
      expect(decodeReceipt(bytes).bytesUp).toBe(v)
    }
  })

  it('round-trips any uint64', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), v => {
      expect(decodeReceipt(encodeReceiptProtobuf({ seq: v, pricePerGb: v })).seq).toBe(v)
    }))
  })

  it('signs and verifies a session past 2 GiB', async () => {
    const r = await countersigned(consumer, exit, { bytesDown: 3n << 30n, bytesUp: 1n << 31n })
    await verifyReceipt(decodeReceipt(encodeReceipt(r)))
  })
})

describe('encodings of receipts made here', () => {
  // signAsConsumer, verifyAndCountersign and verifyCountersignature hand out
  // receipts whose encoding is their signing bytes plus the signature
  // fields: it must be byte for byte what the protobuf codec writes
  it('are exactly the codec\'s, for any field values', async () => {
    const MAX = (1n << 63n) - 1n
    await fc.assert(fc.asyncProperty(
      fc.record({
        sessionId: fc.string({ minLength: 1, maxLength: 128 }).filter(x => !/[\p{Cc}\p{Cs}]/u.test(x)),
        bytesUp: fc.bigInt({ min: 0n, max: MAX }),
        bytesDown: fc.bigInt({ min: 0n, max: MAX }),
        seq: fc.bigInt({ min: 1n, max: MAX }),
        startedAt: fc.bigInt({ min: 0n, max: 1n << 45n }),
        pricePerGb: fc.bigInt({ min: 0n, max: MAX })
      }),
      async fields => {
        const mine = await signAsConsumer(body(consumer, exit, { ...fields, updatedAt: fields.startedAt + 5n }), consumer.key)
        expect(encodeReceipt(mine)).toEqual(encodeReceiptProtobuf({ ...mine }))
        const full = verifyAndCountersign(mine, exit.key)
        expect(encodeReceipt(full)).toEqual(encodeReceiptProtobuf({ ...full }))
        const { receipt } = verifyCountersignature(decodeReceipt(encodeReceipt(full)), mine)
        expect(encodeReceipt(receipt)).toEqual(encodeReceiptProtobuf({ ...full }))
      }
    ), { numRuns: 40 })
  })

  it('own their bytes: changing the arrays they were made from changes nothing', async () => {
    const input = body(consumer, exit, { consumer: Uint8Array.from(consumer.bytes), exit: Uint8Array.from(exit.bytes) })
    const mine = await signAsConsumer(input, consumer.key)
    const wire = decodeReceipt(encodeReceipt(mine))
    const full = verifyAndCountersign(wire, exit.key)
    input.exit![5] ^= 0xff
    wire.consumer![5] ^= 0xff
    wire.consumerSig![0] ^= 0xff
    for (const r of [mine, full]) expect(encodeReceipt(r)).toEqual(encodeReceiptProtobuf({ ...r }))
    await verifyReceipt(decodeReceipt(encodeReceipt(full)))
  })

  it('are frozen: a field cannot be changed under a remembered encoding', async () => {
    const mine = await signAsConsumer(body(consumer, exit), consumer.key)
    expect(() => { (mine as any).bytesDown = 1n }).toThrow(TypeError)
    expect(() => { (verifyAndCountersign(mine, exit.key) as any).seq = 9n }).toThrow(TypeError)
  })
})

describe('forgery and tampering', () => {
  let good: CountersignedReceipt

  beforeAll(async () => {
    good = await countersigned(consumer, exit)
  })

  it('rejects a consumer signature made by a third key', async () => {
    const consumerSig = await mallory.key.sign(receiptSigningBytes(good))
    await expectCode(async () => verifyReceipt({ ...good, consumerSig }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE)
  })

  it('rejects an exit signature made by a third key', async () => {
    const exitSig = await mallory.key.sign(receiptSigningBytes(good))
    await expectCode(async () => verifyReceipt({ ...good, exitSig }), ReceiptErrorCode.BAD_EXIT_SIGNATURE)
  })

  it('rejects signatures over the encoding without the domain string', async () => {
    const plain = encodeReceiptProtobuf(body(consumer, exit))
    const r = { ...good, consumerSig: await consumer.key.sign(plain), exitSig: await exit.key.sign(plain) }
    await expectCode(async () => verifyReceipt(r), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE)
  })

  const tampered: Array<[string, (r: CountersignedReceipt) => Receipt, string]> = [
    ['sessionId', r => ({ ...r, sessionId: 'session-2' }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['consumer', r => ({ ...r, consumer: mallory.bytes }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['exit', r => ({ ...r, exit: mallory.bytes }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['bytesUp', r => ({ ...r, bytesUp: r.bytesUp + 1n }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['bytesDown', r => ({ ...r, bytesDown: r.bytesDown * 10n }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['seq', r => ({ ...r, seq: r.seq + 1n }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['startedAt', r => ({ ...r, startedAt: r.startedAt - 1n }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['updatedAt', r => ({ ...r, updatedAt: r.updatedAt + 1n }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['pricePerGb', r => ({ ...r, pricePerGb: r.pricePerGb - 1n }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['consumerSig', r => ({ ...r, consumerSig: flip(r.consumerSig, 10) }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE],
    ['exitSig', r => ({ ...r, exitSig: flip(r.exitSig, 63) }), ReceiptErrorCode.BAD_EXIT_SIGNATURE]
  ]

  for (const [field, tamper, code] of tampered) {
    it(`rejects a receipt whose ${field} was altered`, async () => {
      await expectCode(async () => verifyReceipt(tamper(good)), code)
    })
  }

  it('rejects every single-byte alteration of the encoded receipt', async () => {
    const encoded = encodeReceipt(good)
    for (let i = 0; i < encoded.byteLength; i++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const err = await caught(async () => verifyReceipt(decodeReceipt(flip(encoded, i, mask))))
        expect(err.name, `byte ${i} ^ ${mask}`).toBe('ReceiptError')
      }
    }
  })
})

describe('well-formedness', () => {
  const cases: Array<[string, Partial<Receipt>]> = [
    ['no session id', { sessionId: undefined }],
    ['an empty session id', { sessionId: '' }],
    ['a session id of 129 characters', { sessionId: 'x'.repeat(129) }],
    ['a control character in the session id', { sessionId: 'a\nb' }],
    ['a lone surrogate in the session id', { sessionId: 'a\ud800b' }],
    ['no consumer', { consumer: undefined }],
    ['no bytes_up', { bytesUp: undefined }],
    ['negative bytes_down', { bytesDown: -1n }],
    ['a counter above 2^63-1', { bytesUp: 1n << 63n }],
    ['seq 0', { seq: 0n }],
    ['updated_at before started_at', { updatedAt: 1n }],
    ['no price', { pricePerGb: undefined }],
    ['a number instead of a bigint', { seq: 1 as any }]
  ]

  for (const [what, overrides] of cases) {
    it(`rejects ${what} as MALFORMED`, async () => {
      await expectCode(async () => signAsConsumer(body(consumer, exit, overrides), consumer.key), ReceiptErrorCode.MALFORMED)
      const r = await countersigned(consumer, exit)
      await expectCode(async () => verifyReceipt({ ...r, ...overrides }), ReceiptErrorCode.MALFORMED)
    })
  }

  it('accepts a 128-character session id and zero counters', async () => {
    await verifyReceipt(await countersigned(consumer, exit, { sessionId: 'é'.repeat(128), bytesUp: 0n, bytesDown: 0n }))
  })

  it('rejects a receipt where consumer and exit are the same peer', async () => {
    const self = { ...body(consumer, consumer) }
    await expectCode(async () => signAsConsumer(self, consumer.key), ReceiptErrorCode.WRONG_PEER)
    const data = receiptSigningBytes(self)
    const sig = await consumer.key.sign(data)
    await expectCode(async () => verifyReceipt({ ...self, consumerSig: sig, exitSig: sig }), ReceiptErrorCode.WRONG_PEER)
  })

  it('rejects signatures of the wrong length', async () => {
    const r = await countersigned(consumer, exit)
    await expectCode(async () => verifyReceipt({ ...r, consumerSig: r.consumerSig.slice(1) }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE)
    await expectCode(async () => verifyReceipt({ ...r, exitSig: new Uint8Array(0) }), ReceiptErrorCode.BAD_EXIT_SIGNATURE)
  })

  it('accepts only Ed25519 peer ids, in their canonical encoding', async () => {
    const secp = peerIdFromPrivateKey(await generateKeyPair('secp256k1')).toMultihash().bytes
    await expectCode(async () => verifyReceipt({ ...await countersigned(consumer, exit), exit: secp }), ReceiptErrorCode.UNSUPPORTED_KEY)
    await expectCode(async () => verifyReceipt({ ...await countersigned(consumer, exit), consumer: new Uint8Array([1, 2, 3]) }), ReceiptErrorCode.UNSUPPORTED_KEY)
    // same key, one extra (unknown) protobuf field in the key: a second spelling of one peer
    const canonical = consumer.bytes
    const padded = new Uint8Array([0x00, canonical[1] + 2, ...canonical.subarray(2), 0x18, 0x00])
    await expectCode(async () => verifyReceipt({ ...await countersigned(consumer, exit), consumer: padded }), ReceiptErrorCode.UNSUPPORTED_KEY)
  })

  it('decodes only the canonical encoding', async () => {
    const encoded = encodeReceipt(await countersigned(consumer, exit))
    // field 1 with another wire type: protons would read the same string
    await expectCode(() => decodeReceipt(flip(encoded, 0)), ReceiptErrorCode.MALFORMED)
    // an unknown field 15 appended
    await expectCode(() => decodeReceipt(new Uint8Array([...encoded, 0x78, 0x01])), ReceiptErrorCode.MALFORMED)
  })

  it('refuses to decode more than MAX_RECEIPT_BYTES and garbage', async () => {
    await expectCode(() => decodeReceipt(new Uint8Array(MAX_RECEIPT_BYTES + 1)), ReceiptErrorCode.TOO_LARGE)
    await expectCode(() => decodeReceipt(new Uint8Array([0x0a, 0xff])), ReceiptErrorCode.MALFORMED)
    await expectCode(() => encodeReceipt({ ...body(consumer, exit), sessionId: 'x'.repeat(2000) }), ReceiptErrorCode.TOO_LARGE)
  })
})

describe('ReceiptTracker', () => {
  it('keeps the newest receipt per session and rejects regressions, replays and conflicts', async () => {
    const tracker = new ReceiptTracker()
    const r1 = await countersigned(consumer, exit, { seq: 1n, bytesUp: 100n, bytesDown: 1_000n })
    const r2 = await countersigned(consumer, exit, { seq: 2n, bytesUp: 200n, bytesDown: 3_000n, updatedAt: 1_700_000_010_000n })
    expect(await tracker.accept(r1)).toBe('inserted')
    expect(await tracker.accept(r2)).toBe('updated')
    expect(tracker.current(receiptId(r1))).toEqual(r2)

    await expectCode(async () => tracker.accept(r2), ReceiptErrorCode.REPLAY)
    await expectCode(async () => tracker.accept(r1), ReceiptErrorCode.REGRESSED)

    const lowerCounter = await countersigned(consumer, exit, { seq: 3n, bytesUp: 199n, bytesDown: 3_000n, updatedAt: 1_700_000_010_000n })
    const err = await caught(async () => tracker.accept(lowerCounter))
    expect(err.code).toBe(ReceiptErrorCode.REGRESSED)
    expect(err.meta.field).toBe('bytesUp')

    const sameSeq = await countersigned(consumer, exit, { seq: 2n, bytesUp: 300n, bytesDown: 3_000n, updatedAt: 1_700_000_010_000n })
    await expectCode(async () => tracker.accept(sameSeq), ReceiptErrorCode.CONFLICT)

    // a receipt of an earlier session that used the same id
    const otherSession = await countersigned(consumer, exit, { seq: 9n, bytesUp: 900n, bytesDown: 9_000n, startedAt: 1_600_000_000_000n })
    const replay = await caught(async () => tracker.accept(otherSession))
    expect(replay.code).toBe(ReceiptErrorCode.REPLAY)
    expect(replay.meta.reason).toBe('other-session')
    const otherPrice = await countersigned(consumer, exit, { seq: 9n, bytesUp: 900n, bytesDown: 9_000n, pricePerGb: 1n })
    await expectCode(async () => tracker.accept(otherPrice), ReceiptErrorCode.REPLAY)

    expect(tracker.current(receiptId(r1))).toEqual(r2)
    expect(tracker.size).toBe(1)
  })

  it('keeps sessions apart and rejects invalid receipts without changing state', async () => {
    const tracker = new ReceiptTracker()
    const a = await countersigned(consumer, exit, { sessionId: 'a' })
    const b = await countersigned(consumer, exit, { sessionId: 'b' })
    await tracker.accept(a)
    await tracker.accept(b)
    await expectCode(async () => tracker.accept({ ...b, seq: 5n }), ReceiptErrorCode.BAD_CONSUMER_SIGNATURE)
    expect(tracker.size).toBe(2)
    expect(tracker.current(receiptId(b))).toEqual(b)
  })

  it("an exit's tracker accepts consumer-signed receipts, then their countersigned copies", async () => {
    const tracker = new ReceiptTracker({ requireExitSig: false })
    const s = await signed(consumer, exit)
    expect(await tracker.accept(s)).toBe('inserted')
    expect(await tracker.accept(await countersign(s, exit.key))).toBe('updated')
    await expectCode(async () => tracker.accept(s), ReceiptErrorCode.REPLAY)
  })

  it('is not affected by later mutation of an accepted object', async () => {
    const tracker = new ReceiptTracker()
    const r = await countersigned(consumer, exit)
    await tracker.accept(r)
    r.consumerSig[0] ^= 1
    await verifyReceipt(tracker.current(receiptId(r))!)
  })
})

function flip (bytes: Uint8Array, index: number, mask = 0x01): Uint8Array<ArrayBuffer> {
  const copy = new Uint8Array(bytes)
  copy[index] ^= mask
  return copy
}
