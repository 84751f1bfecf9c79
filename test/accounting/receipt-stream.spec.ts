/**
 * The exit's side of /spareband/receipt/1.0.0 against a peer that sends
 * junk: every bad frame gets a clear answer or a closed stream, nothing is
 * stored or credited, and the exit goes on serving honest consumers. A real
 * ExitSessions on one libp2p node, a raw client on another (TCP on loopback).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as varint from 'uint8-varint'
import { RECEIPT_PROTOCOL } from '../../src/constants.ts'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import type { ConsumerSessionsInit } from '../../src/accounting/consumer-sessions.ts'
import { ExitSessions, MAX_SIGNED_AHEAD } from '../../src/accounting/exit-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import { ReceiptStreamMessage } from '../../src/accounting/pb/receipt-stream.ts'
import { decodeReceipt, encodeReceipt, receiptSigningBytes, signAsConsumer, verifyAndCountersign, verifyReceipt } from '../../src/accounting/receipts.ts'
import { waitFor } from '../utils/cli.ts'
import { countersigned as fixtureCountersigned, parties } from './fixtures.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import type { ComponentLogger, Libp2p, PrivateKey, Stream } from '@libp2p/interface'

const MiB = 1024 * 1024
/** When the hand-signed sessions start: now, as a consumer's would (an exit refuses a start long before it saw the session). */
const STARTED_AT = BigInt(Date.now())

/** An exit (extending a terabyte of credit) and a consumer on real loopback nodes, each with its ledger file. */
interface ExitAndConsumer {
  dir: string
  exitNode: Libp2p
  consumerNode: Libp2p
  exitLedger: Ledger
  consumerLedger: Ledger
  exit: ExitSessions
  consumer: ConsumerSessions
}

async function exitAndConsumer (prefix: string, consumerExtra: { logger?: ComponentLogger, init?: Partial<ConsumerSessionsInit> } = {}): Promise<ExitAndConsumer> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const [exitNode, consumerNode] = await Promise.all([loopbackNode(keys[0]), loopbackNode(keys[1])])
  const exitLedger = Ledger.open(join(dir, 'exit.db'), { selfPeerId: exitNode.peerId })
  const consumerLedger = Ledger.open(join(dir, 'consumer.db'), { selfPeerId: consumerNode.peerId })
  const exit = new ExitSessions({ logger: defaultLogger() }, { ledger: exitLedger, privateKey: keys[0], pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, creditLimitMicro: -(10n ** 12n), powDifficulty: 0 })
  await exit.start(exitNode)
  const consumer = new ConsumerSessions({ logger: consumerExtra.logger ?? defaultLogger(), dialProtocol: async (peer, protocol, options) => consumerNode.dialProtocol(peer, protocol, options) },
    { ledger: consumerLedger, privateKey: keys[1], priceOf: () => DEFAULT_PRICE_PER_GB_MICRO, ...consumerExtra.init })
  consumer.start()
  await consumerNode.dial(exitNode.getMultiaddrs()[0])
  return { dir, exitNode, consumerNode, exitLedger, consumerLedger, exit, consumer }
}

async function stopExitAndConsumer (p: ExitAndConsumer | undefined): Promise<void> {
  if (p == null) return
  await p.consumer.stop()
  await p.exit.stop()
  await p.consumerNode.stop()
  await p.exitNode.stop()
  p.exitLedger.close()
  p.consumerLedger.close()
  await rm(p.dir, { recursive: true, force: true, maxRetries: 5 })
}

/** A consumer (real ConsumerSessions and ledger file) on a loopback node, and a bare node standing in for its exit. */
interface FakeExitAndConsumer {
  dir: string
  /** [fake exit's, consumer's] */
  keys: PrivateKey[]
  fakeExit: Libp2p
  consumerNode: Libp2p
  ledger: Ledger
  consumer: ConsumerSessions
}

/** `onStream` serves the fake exit's receipt streams, each framed with lpStream. */
async function fakeExitAndConsumer (prefix: string, onStream: (stream: Stream, lp: ReturnType<typeof lpStream>, keys: PrivateKey[]) => Promise<void>, init: Partial<ConsumerSessionsInit> = {}): Promise<FakeExitAndConsumer> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const [fakeExit, consumerNode] = await Promise.all([loopbackNode(keys[0]), loopbackNode(keys[1])])
  await fakeExit.handle(RECEIPT_PROTOCOL, stream => {
    void onStream(stream, lpStream(stream, { maxDataLength: 4096 }), keys).catch(() => {})
  }, { maxInboundStreams: 1024 })
  const ledger = Ledger.open(join(dir, 'consumer.db'), { selfPeerId: consumerNode.peerId })
  const consumer = new ConsumerSessions({ logger: defaultLogger(), dialProtocol: async (peer, protocol, options) => consumerNode.dialProtocol(peer, protocol, options) },
    { ledger, privateKey: keys[1], priceOf: () => DEFAULT_PRICE_PER_GB_MICRO, ...init })
  consumer.start()
  await consumerNode.dial(fakeExit.getMultiaddrs()[0])
  return { dir, keys, fakeExit, consumerNode, ledger, consumer }
}

async function stopFakeExitAndConsumer (p: FakeExitAndConsumer | undefined): Promise<void> {
  if (p == null) return
  await p.consumer.stop()
  await p.consumerNode.stop()
  await p.fakeExit.stop()
  p.ledger.close()
  await rm(p.dir, { recursive: true, force: true, maxRetries: 5 })
}

/** The honest exit's countersignature of a consumer's receipt frame. */
function countersigned (receipt: Uint8Array, exitKey: PrivateKey): ReceiptStreamMessage {
  return { receipt: Uint8Array.from(encodeReceipt(verifyAndCountersign(decodeReceipt(receipt), exitKey))) }
}

describe('receipt stream against a misbehaving consumer', () => {
  let dir: string
  let keys: PrivateKey[]
  let exitNode: Libp2p
  let client: Libp2p
  let ledger: Ledger
  let exit: ExitSessions

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-receipt-stream-'))
    keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    ;[exitNode, client] = await Promise.all([loopbackNode(keys[0]), loopbackNode(keys[1])])
    ledger = Ledger.open(join(dir, 'exit.db'), { selfPeerId: exitNode.peerId })
    exit = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: keys[0], pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, creditLimitMicro: -(10n ** 12n), powDifficulty: 0
    })
    await exit.start(exitNode)
    await client.dial(exitNode.getMultiaddrs()[0])
  })
  afterAll(async () => {
    await exit?.stop()
    await client?.stop()
    await exitNode?.stop()
    ledger?.close()
    await rm(dir, { recursive: true, force: true, maxRetries: 5 })
  })

  const open = async (): Promise<{ stream: Stream, lp: ReturnType<typeof lpStream> }> => {
    const stream = await client.dialProtocol(exitNode.peerId, RECEIPT_PROTOCOL)
    return { stream, lp: lpStream(stream, { maxDataLength: 4096 }) }
  }
  const answer = async (lp: ReturnType<typeof lpStream>): Promise<ReceiptStreamMessage> => ReceiptStreamMessage.decode(await lp.read({ signal: AbortSignal.timeout(5000) }))
  /** A receipt of `sessionId` for `bytes` carried, signed by `signer` (the client's key unless told). */
  const receipt = async (sessionId: string, bytes: number, seq: bigint, signer = keys[1]): Promise<Uint8Array> => encodeReceipt(await signAsConsumer({
    sessionId,
    consumer: client.peerId.toMultihash().bytes,
    exit: exitNode.peerId.toMultihash().bytes,
    bytesUp: 0n,
    bytesDown: BigInt(bytes),
    seq,
    startedAt: STARTED_AT,
    updatedAt: STARTED_AT + seq,
    pricePerGb: DEFAULT_PRICE_PER_GB_MICRO
  }, signer).catch(async () => {
    // another key cannot sign as the client: build the forgery by hand
    const body = { sessionId, consumer: client.peerId.toMultihash().bytes, exit: exitNode.peerId.toMultihash().bytes, bytesUp: 0n, bytesDown: BigInt(bytes), seq, startedAt: STARTED_AT, updatedAt: STARTED_AT + seq, pricePerGb: DEFAULT_PRICE_PER_GB_MICRO }
    return { ...body, consumerSig: await signer.sign(receiptSigningBytes(body)) }
  }))

  /** The exit still countersigns an honest receipt on a fresh stream. */
  async function stillServes (sessionId: string, seq: bigint): Promise<void> {
    exit.admit(client.peerId, sessionId)
    void exit.meter(client.peerId, sessionId, 'down', MiB * Number(seq))
    const { stream, lp } = await open()
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(await receipt(sessionId, MiB * Number(seq), seq)) }))
    const a = await answer(lp)
    expect(a.error).toBeUndefined()
    await verifyReceipt(decodeReceipt(a.receipt!))
    await stream.close()
  }

  it('answers an undecodable frame with an error and keeps the stream', async () => {
    const { stream, lp } = await open()
    await lp.write(Uint8Array.from([0xff, 0xff, 0xff, 0x01, 0x02]))
    expect((await answer(lp)).error).toBe('undecodable frame')
    // a receipt field that is not a receipt
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from([1, 2, 3]) }))
    expect((await answer(lp)).error).toMatch(/.+/)
    await stream.close()
    await stillServes('honest-1', 1n)
  })

  it('refuses forged, foreign, mispriced and unknown-session receipts, stores none of them', async () => {
    exit.admit(client.peerId, 'known')
    void exit.meter(client.peerId, 'known', 'down', 4 * MiB)
    const { stream, lp } = await open()
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['signed by another key', await receipt('known', MiB, 1n, keys[2]), /signature|BAD_CONSUMER/i],
      ['for a session the exit never carried', await receipt('never-carried', MiB, 1n), /unknown session/],
      ['at another price', encodeReceipt(await signAsConsumer({ ...decodeReceipt(await receipt('known', MiB, 1n)), pricePerGb: 1n, consumerSig: undefined }, keys[1])), /price/],
      ['dated two hours ahead', encodeReceipt(await signAsConsumer({ ...decodeReceipt(await receipt('known', MiB, 1n)), updatedAt: BigInt(Date.now() + 2 * 3600_000), consumerSig: undefined }, keys[1])), /ahead of this exit's clock/],
      // nodes that pruned gossip would never count what it spends here
      ['started two hours before the exit saw the session', encodeReceipt(await signAsConsumer({ ...decodeReceipt(await receipt('known', MiB, 1n)), startedAt: STARTED_AT - 2n * 3600_000n, consumerSig: undefined }, keys[1])), /before this exit first saw the session/],
      // uploads signed as sent may run ahead of what got here, but not by more than can be on the way
      ['signing a byte more than twice what was carried plus what can be on the way or lost', await receipt('known', 8 * MiB + MAX_SIGNED_AHEAD + 1, 1n), /but 4194304 were carried here: at most 1082130432 can be signed/],
      ['signing 2^63 - 1 bytes', encodeReceipt(await signAsConsumer({ ...decodeReceipt(await receipt('known', MiB, 1n)), bytesUp: 2n ** 62n, bytesDown: 2n ** 62n - 1n, consumerSig: undefined }, keys[1])), /at most 1082130432 can be signed/]
    ]
    // each refusal is told, for the operator's log
    const told: Array<[string, string]> = []
    exit.setRefusalListener((consumer, reason) => told.push([consumer.toString(), reason]))
    for (const [what, bytes, reason] of cases) {
      await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(bytes) }))
      const a = await answer(lp)
      expect(a.receipt, what).toBeUndefined()
      expect(a.error, what).toMatch(reason)
      expect(told.at(-1), what).toEqual([client.peerId.toString(), a.error])
    }
    expect(told).toHaveLength(cases.length)
    expect(ledger.receipts().filter(r => r.receipt.sessionId === 'known' || r.receipt.sessionId === 'never-carried')).toEqual([])
    // the honest receipt on the same stream still goes through, and one ahead by as much as the bound lets
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(await receipt('known', MiB, 1n)) }))
    expect((await answer(lp)).receipt).toBeDefined()
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(await receipt('known', 8 * MiB + MAX_SIGNED_AHEAD, 2n)) }))
    expect((await answer(lp)).receipt).toBeDefined()
    await stream.close()
  })

  it('signs off no bytes with a receipt the ledger refuses: the consumer is held at the threshold', async () => {
    const sessionId = 'refused-by-ledger'
    exit.admit(client.peerId, sessionId)
    expect(exit.meter(client.peerId, sessionId, 'down', MiB)).toBeUndefined()
    const { stream, lp } = await open()
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(await receipt(sessionId, MiB, 1n)) }))
    expect((await answer(lp)).receipt).toBeDefined()
    // seq advances and the signature is good, but the session restarts at
    // another time (the ledger: a reused session id), claiming 512 MiB (on the way, it may be)
    const body = { ...decodeReceipt(await receipt(sessionId, 512 * MiB, 2n)), startedAt: STARTED_AT + 1n, consumerSig: undefined }
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(encodeReceipt(await signAsConsumer(body, keys[1]))) }))
    const refused = await answer(lp)
    expect(refused.receipt).toBeUndefined()
    expect(refused.error).toMatch(/start/)
    expect(ledger.receipts().find(r => r.receipt.sessionId === sessionId)?.receipt.bytesDown).toBe(BigInt(MiB))
    // 8 MiB more carried: all of it unsigned, so the exit holds the consumer (threshold 4 MiB)
    const pending = exit.pendingBytes()
    const held = Array.from({ length: 8 }, () => exit.meter(client.peerId, sessionId, 'down', MiB))
    expect(exit.pendingBytes()).toBe(pending + 8 * MiB)
    expect(held.at(-1)).toBeInstanceOf(Promise)
    // an honest receipt for what was carried signs it off
    await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(await receipt(sessionId, 9 * MiB, 3n)) }))
    expect((await answer(lp)).receipt).toBeDefined()
    expect(exit.pendingBytes()).toBe(pending)
    await stream.close()
  })

  it('closes the stream on a frame longer than the limit, and serves the next stream', async () => {
    const { stream } = await open()
    const closed = new Promise<void>(resolve => stream.addEventListener('close', () => resolve(), { once: true }))
    // a length prefix of 1 MiB, far over the 2 KiB limit, then some of it
    stream.send(varint.encode(MiB))
    stream.send(new Uint8Array(4096))
    await closed
    expect(stream.status).not.toBe('open')
    await stillServes('honest-2', 1n)
  })

  it('closes the stream on a length prefix that never ends (every byte saying "more follows"), before 64 KiB of it', async () => {
    // @libp2p/utils' lpStream kept each byte of an unfinished prefix and decoded it all again per byte:
    // 37 MB of 0xff took an exit past 4 GB of heap; the stream's 10 min idle timer was all that ended it
    const { stream } = await open()
    const closed = new Promise<void>(resolve => stream.addEventListener('close', () => resolve(), { once: true }))
    const chunk = new Uint8Array(1024).fill(0xff)
    let sent = 0
    while (stream.status === 'open' && sent < 64 * 1024) {
      if (!stream.send(chunk)) await Promise.race([new Promise(resolve => stream.addEventListener('drain', resolve, { once: true })), closed])
      sent += chunk.byteLength
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    await Promise.race([closed, new Promise((_resolve, reject) => setTimeout(() => reject(new Error(`stream still ${stream.status} after ${sent} bytes of prefix`)), 5000))])
    expect(stream.status).not.toBe('open')
    expect(sent).toBeLessThan(64 * 1024)
    await stillServes('honest-4', 1n)
  })

  it('resets the stream of a consumer that sends frames and never reads the answers, long before 4 MiB of them are buffered', async () => {
    // a connection of its own, whose yamux windows no earlier test has grown
    const flooder = await loopbackNode()
    const stream = await flooder.dialProtocol(exitNode.getMultiaddrs()[0], RECEIPT_PROTOCOL)
    const closed = new Promise<void>(resolve => stream.addEventListener('close', () => resolve(), { once: true }))
    // never reads: the exit's answers back up, its loop waits on them, and our frames pile up in its read buffer
    stream.pause()
    const batch = Uint8Array.from(Array.from({ length: 1000 }, () => [5, 0xff, 0xff, 0xff, 0x01, 0x02]).flat())
    let sent = 0
    const deadline = Date.now() + 5000
    while (stream.status === 'open' && Date.now() < deadline) {
      // honours backpressure: what is sent has left here (the window of what the exit has not taken is 256 KiB)
      if (!stream.send(batch)) await Promise.race([new Promise(resolve => stream.addEventListener('drain', resolve, { once: true })), closed])
      sent += batch.byteLength
    }
    await closed
    await flooder.stop()
    expect(sent).toBeLessThan(MiB)
    await stillServes('honest-3', 1n)
  })
})

describe('receipt stream against a misbehaving exit', () => {
  let pair: FakeExitAndConsumer
  let fakeExit: Libp2p
  let ledger: Ledger
  let consumer: ConsumerSessions
  let keys: PrivateKey[]
  const streams: Stream[] = []
  let reply: (frame: Uint8Array) => Promise<Uint8Array>

  beforeAll(async () => {
    // answers each frame with whatever the test says, as raw bytes (framing included)
    pair = await fakeExitAndConsumer('sb-receipt-exit-', async (stream, lp) => {
      streams.push(stream)
      while (true) stream.send(await reply((await lp.read()).subarray()))
    })
    ;({ fakeExit, ledger, consumer, keys } = pair)
  })
  afterAll(async () => { await stopFakeExitAndConsumer(pair) })

  it('resets a stream whose answers break the framing, opens a new one for the next receipt, and records nothing false', async () => {
    // a length prefix of 1 MiB: over the consumer's 2 KiB frame limit
    reply = async () => varint.encode(MiB)
    consumer.meter(fakeExit.peerId, 'down', MiB)
    await waitFor(() => streams.length === 1 && streams[0].status !== 'open', { timeoutMs: 10_000, what: 'the first stream reset' })
    // now a validly countersigned receipt, but for other counters than the consumer signed
    reply = async frame => {
      const asked = decodeReceipt(ReceiptStreamMessage.decode(frame).receipt!)
      const other = verifyAndCountersign(await signAsConsumer({ ...asked, bytesDown: asked.bytesDown! + 1n, consumerSig: undefined }, keys[1]), keys[0])
      const answer = ReceiptStreamMessage.encode({ receipt: Uint8Array.from(encodeReceipt(other)) })
      return Uint8Array.from([...varint.encode(answer.byteLength), ...answer])
    }
    consumer.meter(fakeExit.peerId, 'down', MiB)
    await waitFor(() => streams.length === 2, { timeoutMs: 10_000, what: 'a second stream for the next receipt' })
    await new Promise(resolve => setTimeout(resolve, 300))
    ledger.flush()
    expect(ledger.receipts()).toEqual([])
    // neither receipt was countersigned as signed: both MiB stay owed, for the next receipt to cover
    expect(consumer.pendingBytes()).toBe(2 * MiB)
  })

  it('resets a stream whose answer is a length prefix that never ends, and records nothing', async () => {
    const before = streams.length
    reply = async () => new Uint8Array(4096).fill(0xff)
    consumer.meter(fakeExit.peerId, 'down', MiB)
    await waitFor(() => streams.length > before && streams[before].status !== 'open', { timeoutMs: 5_000, what: 'the stream reset' })
    ledger.flush()
    expect(ledger.receipts()).toEqual([])
  })

  it('records no answer whose exit signature fails, and signs those bytes again by itself', async () => {
    const asked: Array<ReturnType<typeof decodeReceipt>> = []
    reply = async frame => {
      const r = decodeReceipt(ReceiptStreamMessage.decode(frame).receipt!)
      asked.push(r)
      // the first answer: our receipt as signed, with 64 bytes that are no signature of the exit's
      const full = asked.length === 1 ? { ...r, exitSig: new Uint8Array(64).fill(7) } : verifyAndCountersign(r, keys[0])
      const answer = ReceiptStreamMessage.encode({ receipt: Uint8Array.from(encodeReceipt(full)) })
      return Uint8Array.from([...varint.encode(answer.byteLength), ...answer])
    }
    consumer.meter(fakeExit.peerId, 'down', MiB)
    await waitFor(() => asked.length === 1, { timeoutMs: 10_000, what: 'the first receipt' })
    // no more traffic: the consumer's own timer must sign the same bytes again once the ledger refuses the answer
    await waitFor(() => ledger.receipts().length === 1, { timeoutMs: 10_000, what: 'the bytes signed again and the honest answer recorded' })
    const stored = ledger.receipts()[0].receipt
    expect(asked.length).toBeGreaterThanOrEqual(2)
    expect(stored.seq).toBeGreaterThan(asked[0].seq!)
    expect(stored.bytesDown).toBe(asked[0].bytesDown)
    expect(Buffer.from(stored.exitSig).equals(Buffer.alloc(64, 7))).toBe(false)
    expect(consumer.pendingBytes()).toBe(0)
  })
})

describe('receipt stream against an exit that stops answering', () => {
  let pair: FakeExitAndConsumer
  let fakeExit: Libp2p
  let ledger: Ledger
  let consumer: ConsumerSessions
  const streams: Stream[] = []
  const frames: ReceiptStreamMessage[] = []
  /** What the exit answers on streams opened from now on: nothing, hellos only, or everything (honestly). */
  let answers: 'nothing' | 'hellos' | 'all' = 'nothing'

  beforeAll(async () => {
    pair = await fakeExitAndConsumer('sb-receipt-silent-', async (stream, lp, keys) => {
      streams.push(stream)
      const mode = answers
      while (true) {
        const msg = ReceiptStreamMessage.decode(await lp.read())
        frames.push(msg)
        if (mode === 'nothing' || (mode === 'hellos' && msg.receipt != null)) continue
        await lp.write(ReceiptStreamMessage.encode(msg.receipt == null ? {} : countersigned(msg.receipt, keys[0])))
      }
    }, { pow: () => ({ nonce: 0n, difficulty: 0 }), replyTimeoutMs: 300 })
    ;({ fakeExit, ledger, consumer } = pair)
  })
  afterAll(async () => { await stopFakeExitAndConsumer(pair) })

  it('does not queue tunnels one hello timeout after another, nor keep an unanswered request for good', async () => {
    // 20 tunnels at once to an exit that never acks our hello: each waits for one timeout, not for the 19 before it
    const started = Date.now()
    const prepared = Array.from({ length: 20 }, async () => consumer.prepare(fakeExit.peerId))
    const settled = await Promise.race([Promise.allSettled(prepared).then(() => true), new Promise(resolve => setTimeout(() => resolve(false), 3000))])
    expect(settled).toBe(true)
    expect(Date.now() - started).toBeLessThan(3000)
    // what was asked and never answered is dropped with the stream it was asked on
    await waitFor(() => streams.every(s => s.status !== 'open'), { timeoutMs: 3000, what: 'the silent streams closed' })
    const channel = await (consumer as any).sessions.get(fakeExit.peerId.toString())?.channel?.catch(() => undefined)
    expect(channel?.expected.length ?? 0).toBe(0)
  })

  it('gets its receipts countersigned again once the exit answers, instead of stalling with a full window', async () => {
    // a window's worth of receipts (and more) to an exit that acks our hello and answers no receipt
    answers = 'hellos'
    for (let i = 0; i < 12; i++) {
      consumer.meter(fakeExit.peerId, 'down', MiB)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    await waitFor(() => frames.filter(f => f.receipt != null).length >= 8, { timeoutMs: 3000, what: 'a window of receipts sent' })
    answers = 'all'
    // no more traffic: the consumer's own timer signs what is owed, on a new stream the exit answers
    await waitFor(() => { ledger.flush(); return ledger.receipts().length === 1 && consumer.pendingBytes() === 0 }, { timeoutMs: 5000, what: 'the 12 MiB countersigned' })
    expect(ledger.receipts()[0].receipt.bytesDown).toBe(BigInt(12 * MiB))
  })
})

describe('a consumer whose hello the exit refuses', () => {
  let pair: FakeExitAndConsumer
  const hellos: Array<'refused' | 'acked'> = []
  let refuse = true

  beforeAll(async () => {
    // an exit over its budget for this consumer refuses its hello, then takes everything
    pair = await fakeExitAndConsumer('sb-receipt-hello-', async (_stream, lp, keys) => {
      while (true) {
        const msg = ReceiptStreamMessage.decode(await lp.read())
        if (msg.receipt != null) {
          await lp.write(ReceiptStreamMessage.encode(countersigned(msg.receipt, keys[0])))
          continue
        }
        hellos.push(refuse ? 'refused' : 'acked')
        await lp.write(ReceiptStreamMessage.encode(refuse ? { error: 'too many receipts' } : {}))
      }
    }, { pow: () => ({ nonce: 0n, difficulty: 0 }) })
  })
  afterAll(async () => { await stopFakeExitAndConsumer(pair) })

  it('sends its proof again with its next receipt, instead of taking the refusal for an ack', async () => {
    const { consumer, fakeExit, ledger } = pair
    // the tunnel that asked goes ahead all the same (tunnel-client ignores this)
    await expect(consumer.prepare(fakeExit.peerId)).rejects.toThrow(/exit refused our hello: too many receipts/)
    expect(hellos).toEqual(['refused'])
    refuse = false
    consumer.meter(fakeExit.peerId, 'down', MiB)
    await waitFor(() => { ledger.flush(); return ledger.receipts().length === 1 }, { timeoutMs: 5000, what: 'the receipt countersigned' })
    expect(hellos).toEqual(['refused', 'acked'])
  })
})

describe('a consumer given receipts back with the answer to its hello', () => {
  let pair: FakeExitAndConsumer
  let giveBack: (keys: PrivateKey[]) => Promise<Uint8Array[]> = async () => []

  beforeAll(async () => {
    pair = await fakeExitAndConsumer('sb-receipt-latest-', async (_stream, lp, keys) => {
      while (true) {
        const msg = ReceiptStreamMessage.decode(await lp.read())
        if (msg.receipt != null) {
          await lp.write(ReceiptStreamMessage.encode(countersigned(msg.receipt, keys[0])))
          continue
        }
        const receipts = (await giveBack(keys)).map(r => Uint8Array.from(r))
        await lp.write(ReceiptStreamMessage.encode({ latest: { receipts } }))
      }
    }, { pow: () => ({ nonce: 0n, difficulty: 0 }) })
  })
  afterAll(async () => { await stopFakeExitAndConsumer(pair) })

  it('records only its own sessions with that exit, signed by both: nothing an exit made up or got from others', async () => {
    const { consumer, fakeExit, ledger, keys } = pair
    const [exitParty, consumerParty, stranger, otherExit] = [
      { key: keys[0], bytes: fakeExit.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, id: fakeExit.peerId.toString() },
      { key: keys[1], bytes: pair.consumerNode.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, id: pair.consumerNode.peerId.toString() },
      ...(await parties(2))
    ]
    const now = BigInt(Date.now())
    const fields = (sessionId: string): any => ({ sessionId, startedAt: now, updatedAt: now, pricePerGb: DEFAULT_PRICE_PER_GB_MICRO })
    giveBack = async () => [
      encodeReceipt(await fixtureCountersigned(stranger, exitParty, fields('someone-elses'))),
      encodeReceipt(await fixtureCountersigned(consumerParty, otherExit, fields('another-exits'))),
      encodeReceipt({ ...(await fixtureCountersigned(consumerParty, exitParty, fields('forged'))), exitSig: new Uint8Array(64) }),
      encodeReceipt({ ...(await fixtureCountersigned(consumerParty, exitParty, fields('not-mine'))), consumerSig: new Uint8Array(64) }),
      new Uint8Array([1, 2, 3]),
      encodeReceipt(await fixtureCountersigned(consumerParty, exitParty, fields('mine')))
    ]
    await consumer.prepare(fakeExit.peerId)
    await waitFor(() => { ledger.flush(); return ledger.receipts().length > 0 }, { timeoutMs: 5000, what: 'the receipt given back' })
    await new Promise(resolve => setTimeout(resolve, 200))
    ledger.flush()
    expect(ledger.receipts().map(r => r.receipt.sessionId)).toEqual(['mine'])
  })
})

describe("a consumer and the exit's own word on its price", () => {
  const pairs: FakeExitAndConsumer[] = []
  afterAll(async () => { for (const p of pairs) await stopFakeExitAndConsumer(p) })

  /** An exit that charges 3 credits per GB and says so in its hello ack; the prices of the receipts it is sent, in order. */
  async function exitAt3 (advertised: bigint | undefined): Promise<{ pair: FakeExitAndConsumer, prices: bigint[] }> {
    const prices: bigint[] = []
    const pair = await fakeExitAndConsumer('sb-receipt-price-', async (_stream, lp, keys) => {
      while (true) {
        const msg = ReceiptStreamMessage.decode(await lp.read())
        if (msg.receipt == null) {
          await lp.write(ReceiptStreamMessage.encode({ pricePerGb: 3_000_000n }))
          continue
        }
        const r = decodeReceipt(msg.receipt)
        prices.push(r.pricePerGb!)
        await lp.write(ReceiptStreamMessage.encode(r.pricePerGb === 3_000_000n ? countersigned(msg.receipt, keys[0]) : { error: 'wrong price', pricePerGb: 3_000_000n }))
      }
    }, { pow: () => ({ nonce: 0n, difficulty: 0 }), priceOf: () => advertised })
    pairs.push(pair)
    return { pair, prices }
  }

  it('signs at the price the exit states when it has no ad for it (found through identify)', async () => {
    const { pair, prices } = await exitAt3(undefined)
    pair.consumer.meter(pair.fakeExit.peerId, 'down', MiB)
    await waitFor(() => { pair.ledger.flush(); return pair.ledger.receipts().length === 1 }, { timeoutMs: 5000, what: 'the receipt countersigned' })
    expect(prices).toEqual([3_000_000n])
    expect(pair.consumer.refused).toBe(0)
  })

  it('never pays more than the exit advertised: an exit that asks more gets no receipt at its price', async () => {
    const { pair, prices } = await exitAt3(1_000_000n)
    pair.consumer.meter(pair.fakeExit.peerId, 'down', MiB)
    await waitFor(() => prices.length >= 1 && pair.consumer.refused >= 1, { timeoutMs: 5000, what: 'the receipt refused' })
    pair.consumer.meter(pair.fakeExit.peerId, 'down', MiB)
    await waitFor(() => prices.length >= 2, { timeoutMs: 5000, what: 'the next receipt' })
    expect(new Set(prices)).toEqual(new Set([1_000_000n]))
    pair.ledger.flush()
    expect(pair.ledger.receipts()).toHaveLength(0)
  })
})

describe('a consumer whose wall clock steps back', () => {
  let pair: ExitAndConsumer
  let exitNode: Libp2p
  let consumerNode: Libp2p
  let exitLedger: Ledger
  let exit: ExitSessions
  let consumer: ConsumerSessions
  // the real time to begin with: an exit refuses a session that starts long before it saw it
  let clock = Date.now()

  beforeAll(async () => {
    pair = await exitAndConsumer('sb-receipt-clock-', { init: { now: () => clock } })
    ;({ exitNode, consumerNode, exitLedger, exit, consumer } = pair)
  })
  afterAll(async () => { await stopExitAndConsumer(pair) })

  const carry = (sessionId: string, bytes: number): void => {
    void exit.meter(consumerNode.peerId, sessionId, 'down', bytes)
    consumer.meter(exitNode.peerId, 'down', bytes)
  }
  const stored = (): { seq: bigint, bytesDown: bigint, updatedAt: bigint } | undefined => exitLedger.receipts()[0]?.receipt

  it('keeps its receipts advancing: none is refused as a regression', async () => {
    const sessionId = consumer.sessionFor(exitNode.peerId)
    exit.admit(consumerNode.peerId, sessionId)
    clock += 10_000
    carry(sessionId, MiB)
    await waitFor(() => stored()?.seq === 1n, { timeoutMs: 10_000, what: 'the first receipt' })
    const first = stored()!.updatedAt
    clock -= 2_000 // NTP steps the clock back, still after the session's start
    carry(sessionId, MiB)
    carry(sessionId, 5 * MiB)
    await waitFor(() => stored()?.bytesDown === BigInt(7 * MiB), { timeoutMs: 10_000, what: 'receipts covering all 7 MiB' })
    expect(consumer.refused).toBe(0)
    expect(stored()!.updatedAt).toBe(first)
    expect(exit.pendingBytes()).toBe(0)
    expect(consumer.pendingBytes()).toBe(0)
  })

  it('keeps a session while a tunnel on it is open, however quiet, and ends it once none is', async () => {
    const current = (): string | undefined => (consumer as any).sessions.get(exitNode.peerId.toString())?.id
    const sessionId = consumer.sessionFor(exitNode.peerId)
    exit.admit(consumerNode.peerId, sessionId)
    const signedDown = (): bigint => exitLedger.receipts().find(r => r.receipt.sessionId === sessionId)?.receipt.bytesDown ?? 0n
    carry(sessionId, MiB)
    await waitFor(() => consumer.pendingBytes() === 0 && signedDown() > 0n, { timeoutMs: 10_000, what: 'the receipt' })
    const before = signedDown()
    // an ssh session sits quiet for a minute: the session stays, so its next bytes are signed under the id the exit meters them by
    clock += 60_000
    ;(consumer as any).tick()
    expect(current()).toBe(sessionId)
    carry(sessionId, MiB)
    await waitFor(() => signedDown() === before + BigInt(MiB), { timeoutMs: 10_000, what: 'the next receipt of the same session' })
    expect(consumer.refused).toBe(0)
    // the tunnels end (this test's, and the one the test before opened): the next quiet spell ends the session
    consumer.release(exitNode.peerId, sessionId)
    consumer.release(exitNode.peerId, sessionId)
    clock += 60_000
    ;(consumer as any).tick()
    await waitFor(() => current() == null, { what: 'the session to close' })
  })
})

describe("the consumer's receipt interval", () => {
  let pair: ExitAndConsumer
  // the consumer's clock, from now: the exit (on the real clock) refuses sessions that started long before it saw them
  let clock = Date.now()

  beforeAll(async () => { pair = await exitAndConsumer('sb-receipt-interval-', { init: { now: () => clock } }) })
  afterAll(async () => { await stopExitAndConsumer(pair) })

  it('signs what is under 1 MiB once per 5 s interval, not at every once-a-second tick', async () => {
    const { exit, consumer, exitNode, consumerNode, exitLedger } = pair
    const sessionId = consumer.sessionFor(exitNode.peerId)
    exit.admit(consumerNode.peerId, sessionId)
    const carry = (bytes: number): void => {
      void exit.meter(consumerNode.peerId, sessionId, 'down', bytes)
      consumer.meter(exitNode.peerId, 'down', bytes)
    }
    const stored = (): { seq: bigint, bytesDown: bigint } | undefined => exitLedger.receipts()[0]?.receipt
    const tick = (): void => { (consumer as any).tick() }
    // a session's first bytes are signed at the first tick
    carry(100_000)
    tick()
    await waitFor(() => stored()?.seq === 1n, { timeoutMs: 10_000, what: 'the first receipt' })
    carry(100_000)
    for (let waited = 1_000; waited < 5_000; waited += 1_000) {
      clock += 1_000
      tick()
    }
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(stored()?.seq).toBe(1n)
    expect(consumer.pendingBytes()).toBe(100_000)
    clock += 1_000
    tick()
    await waitFor(() => stored()?.seq === 2n, { timeoutMs: 10_000, what: 'the receipt one interval later' })
    expect(stored()?.bytesDown).toBe(200_000n)
    expect(exit.pendingBytes()).toBe(0)
  })
})

describe('a consumer whose ledger cannot write', () => {
  let pair: ExitAndConsumer
  let exitNode: Libp2p
  let consumerNode: Libp2p
  let exitLedger: Ledger
  let consumerLedger: Ledger
  let exit: ExitSessions
  let consumer: ConsumerSessions
  /** The consumer's error lines, as the operator's log would get them. */
  const errors: string[] = []

  beforeAll(async () => {
    const logger = {
      forComponent: (name: string) => {
        const log = defaultLogger().forComponent(name)
        return Object.assign((formatter: any, ...args: any[]) => { log(formatter, ...args) }, {
          error: (formatter: string, ...args: any[]) => { errors.push(formatter.replace('%s', String(args[2] ?? ''))) },
          trace: log.trace,
          enabled: log.enabled,
          newScope: log.newScope
        })
      }
    }
    pair = await exitAndConsumer('sb-receipt-unwritable-', { logger })
    ;({ exitNode, consumerNode, exitLedger, consumerLedger, exit, consumer } = pair)
  })
  afterAll(async () => { await stopExitAndConsumer(pair) })

  it('logs a few error lines a minute, not one per MiB, and the exit still gets every receipt', async () => {
    const sessionId = consumer.sessionFor(exitNode.peerId)
    exit.admit(consumerNode.peerId, sessionId)
    // the disk went: every countersigned receipt fails to be written from now on
    consumerLedger.close()
    for (let i = 1; i <= 20; i++) {
      void exit.meter(consumerNode.peerId, sessionId, 'down', MiB)
      consumer.meter(exitNode.peerId, 'down', MiB)
      await waitFor(() => exitLedger.receipts()[0]?.receipt.bytesDown === BigInt(i * MiB), { timeoutMs: 10_000, what: `the exit's receipt for ${i} MiB` })
    }
    await waitFor(() => errors.length >= 5, { what: 'the first error lines' })
    // the answers of all 20 have come (the exit stored each before it answered); give the last failures a moment to log
    await new Promise(resolve => setTimeout(resolve, 300))
    const unrecorded = errors.filter(e => e.startsWith('countersigned receipt'))
    expect(unrecorded).toHaveLength(5)
  })
})
