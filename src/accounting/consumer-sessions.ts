/**
 * The consumer's side of accounting: one session per exit it uses. Every
 * tunnel to that exit carries the session id; the consumer meters the bytes
 * and signs a cumulative receipt every 1 MiB or 5 s, whichever comes first,
 * on one `/spareband/receipt/1.0.0` stream. The exit's countersigned copy
 * goes into the ledger: that is what the consumer has spent.
 *
 * A session ends after a quiet spell (or when the node stops): its last
 * receipt is signed and the stream closed, which tells the exit to publish
 * the final receipt. The next tunnel starts a new session.
 */

import { randomBytes } from 'node:crypto'
import { lpStream } from '@libp2p/utils'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { RECEIPT_PROTOCOL, second } from '../constants.ts'
import { decodeReceipt, encodeReceipt, signAsConsumer, verifyReceipt } from './receipts.ts'
import { ReceiptStreamMessage } from './pb/receipt-stream.ts'
import { DEFAULT_PRICE_PER_GB_MICRO, DEFAULT_RECEIPT_INTERVAL_BYTES, DEFAULT_RECEIPT_INTERVAL_MS } from './constants.ts'
import type { ConsumerAccounting, MeterDirection } from '../relay/accounting-hooks.ts'
import type { Ledger } from './ledger.ts'
import type { AbortOptions, ComponentLogger, Logger, PeerId, PrivateKey, Stream } from '@libp2p/interface'

const MAX_FRAME = 2048

export interface ConsumerSessionsInit {
  ledger: Ledger
  privateKey: PrivateKey
  /** The exit's advertised price, micro-credits per GB. */
  priceOf?: (exit: PeerId) => bigint | undefined
  /** @default 1 MiB */
  intervalBytes?: number
  /** @default 5 s */
  intervalMs?: number
  /** A session with no traffic for this long is closed. @default 30 s */
  sessionIdleMs?: number
  /** Our proof of work, once solved. */
  pow?: () => { nonce: bigint, difficulty: number } | undefined
  now?: () => number
}

export interface ConsumerSessionsComponents {
  logger: ComponentLogger
  dialProtocol: (peer: PeerId, protocol: string, options: AbortOptions & { runOnLimitedConnection?: boolean }) => Promise<Stream>
}

interface Session {
  id: string
  exit: PeerId
  startedAt: bigint
  price: bigint
  up: number
  down: number
  /** up + down covered by the newest receipt we sent. */
  sentTotal: number
  seq: bigint
  lastActivity: number
  stream?: Promise<ReturnType<typeof lpStream>>
  /** Serialises signing: one receipt in flight per session. */
  signing?: Promise<void>
  sentPow: boolean
  closed: boolean
}

export class ConsumerSessions implements ConsumerAccounting {
  private readonly log: Logger
  private readonly sessions = new Map<string, Session>()
  private readonly self: PeerId
  private readonly now: () => number
  private timer?: NodeJS.Timeout
  /** Receipts the exits refused, for `balance` and tests. */
  refused = 0

  constructor (private readonly components: ConsumerSessionsComponents, private readonly init: ConsumerSessionsInit) {
    this.log = components.logger.forComponent('spareband:accounting:consumer')
    this.self = peerIdFromPrivateKey(init.privateKey)
    this.now = init.now ?? Date.now
  }

  start (): void {
    const interval = this.init.intervalMs ?? DEFAULT_RECEIPT_INTERVAL_MS
    this.timer = setInterval(() => this.tick(), Math.min(interval, second))
    this.timer.unref()
  }

  /** Signs what is outstanding and closes every session. */
  async stop (): Promise<void> {
    clearInterval(this.timer)
    await Promise.allSettled([...this.sessions.values()].map(async s => this.close(s)))
  }

  /** Bytes used but not yet covered by a receipt we signed. */
  pendingBytes (): number {
    let n = 0
    for (const s of this.sessions.values()) n += s.up + s.down - s.sentTotal
    return n
  }

  sessionFor (exit: PeerId): string {
    return this.sessionOf(exit).id
  }

  meter (exit: PeerId, direction: MeterDirection, bytes: number): void {
    const s = this.sessionOf(exit)
    if (direction === 'up') s.up += bytes
    else s.down += bytes
    s.lastActivity = this.now()
    if (s.up + s.down - s.sentTotal >= (this.init.intervalBytes ?? DEFAULT_RECEIPT_INTERVAL_BYTES)) this.sign(s)
  }

  private sessionOf (exit: PeerId): Session {
    const key = exit.toString()
    let s = this.sessions.get(key)
    if (s == null || s.closed) {
      s = {
        id: randomBytes(12).toString('base64url'),
        exit,
        startedAt: BigInt(this.now()),
        price: this.init.priceOf?.(exit) ?? DEFAULT_PRICE_PER_GB_MICRO,
        up: 0,
        down: 0,
        sentTotal: 0,
        seq: 0n,
        lastActivity: this.now(),
        sentPow: false,
        closed: false
      }
      this.sessions.set(key, s)
    }
    return s
  }

  private tick (): void {
    const now = this.now()
    for (const s of this.sessions.values()) {
      const outstanding = s.up + s.down - s.sentTotal
      if (outstanding > 0 && now - s.lastActivity >= 0) this.sign(s)
      if (outstanding === 0 && now - s.lastActivity > (this.init.sessionIdleMs ?? 30 * second)) void this.close(s)
    }
  }

  private async open (s: Session): Promise<ReturnType<typeof lpStream>> {
    s.stream ??= (async () => {
      const stream = await this.components.dialProtocol(s.exit, RECEIPT_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(10 * second) })
      return lpStream(stream, { maxDataLength: MAX_FRAME })
    })()
    try {
      return await s.stream
    } catch (err) {
      s.stream = undefined
      throw err
    }
  }

  /** Signs the session's totals now, unless a receipt is already in flight (the next tick catches up). */
  private sign (s: Session): void {
    if (s.signing != null) return
    s.signing = this.signNow(s).catch(err => {
      this.log('receipt for %p not delivered - %e', s.exit, err)
      s.stream = undefined
    }).finally(() => { s.signing = undefined })
  }

  async prepare (exit: PeerId): Promise<void> {
    const s = this.sessionOf(exit)
    if (s.sentPow || this.init.pow?.() == null) return
    await s.signing
    s.signing = this.hello(s, await this.open(s)).finally(() => { s.signing = undefined })
    await s.signing
  }

  /** Sends our proof of work once per session and waits for the exit's ack. */
  private async hello (s: Session, lp: ReturnType<typeof lpStream>): Promise<void> {
    const pow = this.init.pow?.()
    if (s.sentPow || pow == null) return
    const nonce = new Uint8Array(8)
    new DataView(nonce.buffer).setBigUint64(0, pow.nonce)
    await lp.write(ReceiptStreamMessage.encode({ powNonce: nonce, powDifficulty: pow.difficulty }))
    await lp.read({ signal: AbortSignal.timeout(5 * second) })
    s.sentPow = true
  }

  private async signNow (s: Session): Promise<void> {
    const total = s.up + s.down
    if (total <= s.sentTotal && s.seq > 0n) return
    const lp = await this.open(s)
    await this.hello(s, lp)
    s.seq += 1n
    const signed = await signAsConsumer({
      sessionId: s.id,
      consumer: this.self.toMultihash().bytes,
      exit: s.exit.toMultihash().bytes,
      bytesUp: BigInt(s.up),
      bytesDown: BigInt(s.down),
      seq: s.seq,
      startedAt: s.startedAt,
      updatedAt: BigInt(Math.max(Number(s.startedAt), this.now())),
      pricePerGb: s.price
    }, this.init.privateKey)
    const before = s.sentTotal
    s.sentTotal = total
    let reply: ReceiptStreamMessage
    try {
      await lp.write(ReceiptStreamMessage.encode({ receipt: Uint8Array.from(encodeReceipt(signed)) }))
      reply = ReceiptStreamMessage.decode((await lp.read({ signal: AbortSignal.timeout(15 * second) })).subarray())
    } catch (err) {
      // cumulative receipts: the next one covers these bytes again
      s.sentTotal = before
      throw err
    }
    if (reply.receipt == null) {
      this.refused++
      throw new Error(`exit refused the receipt: ${reply.error ?? 'no reason given'}`)
    }
    const full = decodeReceipt(reply.receipt)
    const parties = await verifyReceipt(full)
    if (!parties.exit.equals(s.exit) || full.sessionId !== s.id || full.seq !== s.seq || full.bytesUp !== signed.bytesUp || full.bytesDown !== signed.bytesDown) {
      throw new Error('the exit countersigned something else than we signed')
    }
    await this.init.ledger.recordReceipt(full, 'own')
  }

  private async close (s: Session): Promise<void> {
    if (s.closed) return
    s.closed = true
    await s.signing
    if (s.up + s.down > s.sentTotal) {
      s.signing = this.signNow(s).catch(err => this.log('final receipt for %p not delivered - %e', s.exit, err))
      await s.signing
    }
    const lp = await s.stream?.catch(() => undefined)
    if (lp != null) {
      const stream = lp.unwrap()
      await stream.close({ signal: AbortSignal.timeout(2 * second) }).catch(() => stream.abort(new Error('close timed out')))
    }
    if (this.sessions.get(s.exit.toString()) === s) this.sessions.delete(s.exit.toString())
  }
}
