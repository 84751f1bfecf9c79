/**
 * An exit's budget for frames on /spareband/receipt/1.0.0: a consumer that
 * sends receipts (or hellos) faster than it earns them is refused before
 * any signature or ledger work, and its stream is reset if it sends on; an
 * honest one, however fast it carries, never is. A real ExitSessions and
 * ledger file on one libp2p node, with a clock that moves only when a test
 * moves it (so no token comes back with time unless told), raw clients
 * with fresh identities (so fresh budgets) on others, TCP on loopback; then
 * a real exit and consumer node carrying a tunnel, on the real clock.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { lpStream } from '@libp2p/utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RECEIPT_PROTOCOL } from '../../src/constants.ts'
import { ExitSessions, MAX_RECEIPT_STREAMS, RECEIPT_BURST, RECEIPTS_PER_SECOND } from '../../src/accounting/exit-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import { encodePowNonce } from '../../src/accounting/credits.ts'
import { ReceiptStreamMessage } from '../../src/accounting/pb/receipt-stream.ts'
import { encodeReceipt, receiptId, receiptSigningBytes, signAsConsumer } from '../../src/accounting/receipts.ts'
import { waitFor } from '../utils/cli.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { startEchoServer, startExitAndConsumer } from '../utils/in-process.ts'
import { socksConnect } from '../utils/socks-client.ts'
import type { AccountingPart } from '../../src/node/accounting-part.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { Libp2p, PrivateKey, Stream } from '@libp2p/interface'

/** When the test's sessions start: now, as an exit refuses sessions that started long before it first saw them. */
const STARTED_AT = BigInt(Date.now())

const MiB = 1024 * 1024

/** One receipt stream: ask() writes a frame and reads its answer, or undefined once the exit has reset the stream. */
interface Conversation {
  stream: Stream
  ask: (msg: ReceiptStreamMessage) => Promise<ReceiptStreamMessage | undefined>
}

interface Client {
  node: Libp2p
  key: PrivateKey
  open: () => Promise<Conversation>
  /** A receipt of `sessionId` covering `up` and `down` bytes, signed by the client (or forged by `signer`). */
  receipt: (sessionId: string, up: number, down: number, seq: bigint, signer?: PrivateKey) => Promise<Uint8Array<ArrayBuffer>>
}

/** A real ExitSessions with its ledger file, on a loopback node. */
interface ExitUnderTest { dir: string, node: Libp2p, ledger: Ledger, exit: ExitSessions }

/** Credit for everyone: what stops a flood is the budget alone. */
async function startExit (now: () => number): Promise<ExitUnderTest> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-receipt-flood-'))
  const privateKey = await generateKeyPair('Ed25519')
  const node = await loopbackNode(privateKey)
  const ledger = Ledger.open(join(dir, 'exit.db'), { selfPeerId: node.peerId })
  const exit = new ExitSessions({ logger: defaultLogger() }, { ledger, privateKey, pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, creditLimitMicro: -(10n ** 12n), powDifficulty: 0, now })
  await exit.start(node)
  return { dir, node, ledger, exit }
}

async function stopExit (e: ExitUnderTest | undefined): Promise<void> {
  await e?.exit.stop()
  await e?.node.stop()
  e?.ledger.close()
  if (e != null) await rm(e.dir, { recursive: true, force: true, maxRetries: 5 })
}

describe('receipt budget against a flooding consumer', () => {
  let clock = Date.now()
  let e: ExitUnderTest
  const clients: Libp2p[] = []

  beforeAll(async () => { e = await startExit(() => clock) })
  afterAll(async () => {
    await Promise.all(clients.map(async c => c.stop()))
    await stopExit(e)
  })

  /** A consumer with an identity of its own, connected to the exit, with `sessionId` admitted if given. */
  async function client (sessionId?: string): Promise<Client> {
    const key = await generateKeyPair('Ed25519')
    const node = await loopbackNode(key)
    clients.push(node)
    await node.dial(e.node.getMultiaddrs()[0])
    if (sessionId != null) expect(e.exit.admit(node.peerId, sessionId)).toBeUndefined()
    return {
      node,
      key,
      open: async () => {
        const stream = await node.dialProtocol(e.node.peerId, RECEIPT_PROTOCOL)
        const lp = lpStream(stream, { maxDataLength: 4096 })
        return {
          stream,
          ask: async msg => {
            try {
              await lp.write(ReceiptStreamMessage.encode(msg))
              return ReceiptStreamMessage.decode(await lp.read({ signal: AbortSignal.timeout(5000) }))
            } catch (err: any) {
              if (stream.status === 'open') throw err
              return undefined
            }
          }
        }
      },
      receipt: async (sessionId, up, down, seq, signer = key) => {
        const body = { sessionId, consumer: node.peerId.toMultihash().bytes, exit: e.node.peerId.toMultihash().bytes, bytesUp: BigInt(up), bytesDown: BigInt(down), seq, startedAt: STARTED_AT, updatedAt: STARTED_AT + seq, pricePerGb: DEFAULT_PRICE_PER_GB_MICRO }
        // another key cannot sign as the client: a forgery is built by hand
        return Uint8Array.from(encodeReceipt(signer === key ? await signAsConsumer(body, key) : { ...body, consumerSig: await signer.sign(receiptSigningBytes(body)) }))
      }
    }
  }

  /** The seq of the session's receipt in the exit's ledger. */
  const storedSeq = (c: Client, sessionId: string): bigint | undefined =>
    e.ledger.get(receiptId({ sessionId, consumer: c.node.peerId.toMultihash().bytes, exit: e.node.peerId.toMultihash().bytes }))?.receipt.seq

  it('refuses a flood of valid receipts from a consumer that carries nothing once its budget is spent, before any signature or ledger work', async () => {
    const c = await client('flood')
    // each one byte more than the last; signed ahead, so the flood is as fast as the connection
    const receipts = await Promise.all(Array.from({ length: 3 * RECEIPT_BURST }, async (_, i) => c.receipt('flood', 0, i + 1, BigInt(i + 1))))
    const forged = await c.receipt('flood', 0, 10 * MiB, 10_000n, await generateKeyPair('Ed25519'))
    const refusedBefore = e.exit.receiptsRefused
    const conversation = await c.open()
    let served = 0
    let lastServed = 0n
    let refused = 0
    for (const [i, r] of receipts.entries()) {
      const answer = await conversation.ask({ receipt: r })
      if (answer?.receipt != null) {
        served++
        lastServed = BigInt(i + 1)
      } else {
        expect(answer?.error).toMatch(/^too many receipts: /)
        refused++
      }
      // short of a bucket's worth of refusals, after which the stream is reset (next test)
      if (refused === RECEIPT_BURST - 1) break
    }
    // the burst and no more: the clock stood still, and nothing was carried
    expect(served).toBe(RECEIPT_BURST)
    expect(refused).toBe(RECEIPT_BURST - 1)
    // only receipts served reached the ledger: its row stops at the last of them
    expect(storedSeq(c, 'flood')).toBe(lastServed)
    // a forgery now is refused for the budget, not for its signature: it was not even checked
    expect((await conversation.ask({ receipt: forged }))?.error).toMatch(/^too many receipts: /)
    expect(e.exit.receiptsRefused - refusedBefore).toBe(RECEIPT_BURST)
    await conversation.stream.close()
  })

  it('resets the stream of a consumer that sends on after a bucket\'s worth of refusals, and a new stream brings no budget of its own', async () => {
    const c = await client('reset')
    const receipts = await Promise.all(Array.from({ length: 4 * RECEIPT_BURST }, async (_, i) => c.receipt('reset', 0, i + 1, BigInt(i + 1))))
    const first = await c.open()
    let refusedInARow = 0
    let next = 0
    while (next < receipts.length) {
      const answer = await first.ask({ receipt: receipts[next++] })
      if (answer == null) break
      refusedInARow = answer.receipt != null ? 0 : refusedInARow + 1
    }
    // the burst served, a bucket's worth of refusals answered, then the stream went
    expect(next).toBe(2 * RECEIPT_BURST + 1)
    expect(first.stream.status).not.toBe('open')
    expect(refusedInARow).toBe(RECEIPT_BURST)
    // another stream is reset at its first frame: refusals are the consumer's, not the stream's
    const second = await c.open()
    expect(await second.ask({ receipt: receipts[next++] })).toBeUndefined()
    expect(second.stream.status).not.toBe('open')
    // and it is not shut out: once time has given a token back, a receipt goes through
    clock += 1000 / RECEIPTS_PER_SECOND
    const third = await c.open()
    expect((await third.ask({ receipt: receipts[next++] }))?.receipt).toBeDefined()
    await third.stream.close()
  })

  it(`takes at most ${MAX_RECEIPT_STREAMS} receipt streams at once on a connection`, async () => {
    const c = await client()
    const hello = { powNonce: encodePowNonce(0n), powDifficulty: 0 }
    const open: Conversation[] = []
    for (let i = 0; i < MAX_RECEIPT_STREAMS; i++) {
      const conversation = await c.open()
      expect((await conversation.ask(hello))?.error).toBeUndefined()
      open.push(conversation)
    }
    /** Whether a new stream's hello is acked (not reset). */
    const acked = async (): Promise<boolean> => {
      const answer = await c.open().then(async conversation => conversation.ask(hello)).catch(() => undefined)
      return answer != null && answer.error == null
    }
    expect(await acked()).toBe(false)
    // one closed, a new one is taken
    await open[0].stream.close()
    await waitFor(acked, { timeoutMs: 5000, intervalMs: 50, what: 'a new receipt stream once one closed' })
  })

  it('writes a repeated proof of work once, and counts hellos against the same budget', async () => {
    const c = await client()
    const conversation = await c.open()
    const hello = { powNonce: encodePowNonce(0n), powDifficulty: 0 }
    expect((await conversation.ask(hello))?.error).toBeUndefined()
    expect(e.ledger.pow(c.node.peerId)).toEqual({ nonce: 0n, difficulty: 0 })
    // another connection to the file sees every commit the exit makes as a new data_version
    const reader = new DatabaseSync(join(e.dir, 'exit.db'), { readOnly: true })
    try {
      const dataVersion = (): number => Number((reader.prepare('PRAGMA data_version').get() as { data_version: number }).data_version)
      const before = dataVersion()
      let acked = 1
      let answer: ReceiptStreamMessage | undefined
      while ((answer = await conversation.ask(hello))?.error == null && acked < 4 * RECEIPT_BURST) acked++
      expect(dataVersion()).toBe(before)
      expect(answer?.error).toMatch(/^too many receipts: /)
      expect(acked).toBe(RECEIPT_BURST)
    } finally {
      reader.close()
    }
    await conversation.stream.close()
  })

  it('never refuses an honest consumer: uploads signed before they arrive, then a receipt per MiB carried, far past the burst', async () => {
    const c = await client('honest')
    const refusedBefore = e.exit.receiptsRefused
    const conversation = await c.open()
    let seq = 0n
    const ask = async (up: number, down: number): Promise<void> => {
      const answer = await conversation.ask({ receipt: await c.receipt('honest', up, down, ++seq) })
      expect(answer?.error).toBeUndefined()
    }
    // the consumer signs uploads as it sends them: receipts for the first 48 MiB come before any of it is carried here
    const ahead = 48
    for (let mib = 1; mib <= ahead; mib++) await ask(mib * MiB, 0)
    for (let mib = 0; mib < ahead; mib++) void e.exit.meter(c.node.peerId, 'honest', 'up', MiB)
    // then a download, with a receipt after every MiB: more receipts than the burst and the rate allow
    for (let mib = 1; mib <= 4 * RECEIPT_BURST; mib++) {
      void e.exit.meter(c.node.peerId, 'honest', 'down', MiB)
      await ask(ahead * MiB, mib * MiB)
    }
    expect(e.exit.receiptsRefused).toBe(refusedBefore)
    expect(storedSeq(c, 'honest')).toBe(seq)
    await conversation.stream.close()
  })
})

describe('receipt budget with an honest consumer through a real tunnel', () => {
  it('refuses none of the receipts of 64 MiB echoed through a tunnel (a receipt per MiB each way)', async () => {
    const echo = await startEchoServer()
    let nodes: { exit: SparebandNode, consumer: SparebandNode } | undefined
    try {
      nodes = await startExitAndConsumer([echo.port], { dataDirPrefix: 'sb-flood-honest-' })
      const { exit, consumer } = nodes
      const total = 64 * MiB
      const { socket, reply } = await socksConnect((consumer.status() as any).proxy.socksPort, '127.0.0.1', echo.port)
      expect(reply).toBe(0)
      let received = 0
      const done = new Promise<void>((resolve, reject) => {
        socket.on('data', d => { received += d.byteLength; if (received >= total) resolve() })
        socket.once('close', () => { if (received < total) reject(new Error(`closed after ${received} of ${total} bytes`)) })
      })
      const block = randomBytes(MiB)
      for (let i = 0; i < total / MiB; i++) if (!socket.write(block)) await once(socket, 'drain')
      await done
      socket.destroy()
      const exitLedger = exit.part<AccountingPart>('accounting')!.core.ledger
      // the consumer's receipts keep coming after the last byte: wait for the one that covers them all
      await waitFor(() => exitLedger.receipts({ peer: consumer.peerId }).some(r => r.receipt.bytesUp + r.receipt.bytesDown >= BigInt(2 * total)), { timeoutMs: 20_000, what: 'a receipt for all bytes' })
      const stored = exitLedger.receipts({ peer: consumer.peerId })
      // far more receipts than the burst: the bytes earned them
      expect(stored.reduce((n, r) => n + Number(r.receipt.seq), 0)).toBeGreaterThan(RECEIPT_BURST + 16)
      expect((exit.status() as any).accounting.pending.receiptsRefused).toBe(0)
      expect(consumer.part<AccountingPart>('accounting')!.consumer.refused).toBe(0)
    } finally {
      await nodes?.consumer.stop()
      await nodes?.exit.stop()
      await echo.close()
    }
  })
})
