/**
 * The exit's side of accounting: it meters every consumer session, takes
 * the consumer's signed cumulative receipts on `/spareband/receipt/1.0.0`,
 * countersigns them, stores them in the ledger and publishes them.
 *
 * The credit at risk is bounded: once a consumer has more than the
 * threshold of bytes carried but not signed, its open tunnels are held
 * (the pump waits on a promise) and new ones are refused with RATE_LIMITED,
 * until a receipt covers the bytes. A consumer whose balance, as this
 * ledger sees it, is not above the credit limit gets INSUFFICIENT_CREDIT;
 * and one whose balance above the limit pays for fewer bytes than the
 * threshold is held at what it pays for (the ledger credits us only that).
 */

import { boundedLpStream } from '../length-prefixed.ts'
import type { lpStream } from '@libp2p/utils'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { RECEIPT_PROTOCOL, KiB, second, minute } from '../constants.ts'
import { TunnelStatus } from '../relay/tunnel-protocol.ts'
import { TokenBucket } from '../relay/shaping.ts'
import { decodeReceipt, ed25519PeerFromBytes, encodeReceipt, receiptId, verifyAndCountersign } from './receipts.ts'
import { decodePowNonce, formatCredits, verifyPow } from './credits.ts'
import { ReceiptStreamMessage } from './pb/receipt-stream.ts'
import { BYTES_PER_GB, DEFAULT_UNSIGNED_BYTES_THRESHOLD, MAX_CLOCK_AHEAD_MS } from './constants.ts'
import type { ExitAccounting, MeterDirection } from '../relay/accounting-hooks.ts'
import { LedgerError, LedgerErrorCode } from './errors.ts'
import type { Ledger } from './ledger.ts'
import type { CountersignedReceipt } from './receipts.ts'
import type { ComponentLogger, Connection, Logger, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'

/** No receipt frame comes near this. */
const MAX_FRAME = 2048
/**
 * Bytes of receipts a hello's answer gives back (latestFor): four or five,
 * in a frame under the 2 KiB a consumer reads, this version or an older one
 * (which skips the field).
 */
const LATEST_BYTES = 1536
/**
 * Bytes a receipt stream may have received and not yet read. An honest
 * consumer has at most a hello and 8 receipts (2 KiB frames at most) in
 * flight; one that sends on without reading our answers backed up 4 MiB
 * (lpStream's default) per stream, on each of its receipt streams.
 */
const MAX_READ_BUFFER = 64 * 1024
/**
 * Receipt streams a consumer may have open at once on a connection. An
 * honest one has a stream per session and a session per exit at a time (two
 * while the last one's final receipt goes out; a stream it gives up on is
 * reset before it opens the next). At 256, a cheat had 256 read buffers
 * (above) filling at once; its frame budget (below) is per consumer anyway.
 */
export const MAX_RECEIPT_STREAMS = 8
/**
 * Frames (receipts, hellos) a consumer may send at once. Each receipt we
 * take costs a signature check, a countersignature and a ledger commit
 * (about 0.8 ms of CPU and a disk write), so every frame takes a token from
 * its consumer's bucket before any work is done on it, and one that finds
 * none is answered with an error at once. The burst covers what an honest
 * consumer sends ahead of what it earns: it signs uploads as it sends them,
 * so receipts for up to this many MiB on the way can arrive before the
 * bytes they cover are carried here and earn their tokens.
 */
export const RECEIPT_BURST = 64
/**
 * Tokens a consumer regains per second whatever it carries. An honest
 * consumer signs a session with little traffic every 5 s (sooner only after
 * a receipt that got no countersignature, at its once-a-second tick) and
 * has one session per exit (two while one closes). Per consumer, not per
 * session: a cheat may hold 64 sessions.
 */
export const RECEIPTS_PER_SECOND = 4
/**
 * And one more token per this many bytes carried for it: an honest consumer
 * signs every MiB (accounting.receipt_interval_mb), so it earns four tokens
 * per receipt and is never short at any speed, while one that carries
 * nothing gets RECEIPTS_PER_SECOND alone. Tokens earned so cost the consumer
 * the bytes' price.
 */
export const BYTES_PER_RECEIPT = 256 * KiB
const TOO_MANY_RECEIPTS = `too many receipts: this exit takes ${RECEIPTS_PER_SECOND} a second and one per ${BYTES_PER_RECEIPT / KiB} KiB carried, after a burst of ${RECEIPT_BURST}; the next receipt covers this one's bytes`
/**
 * A consumer over the unsigned threshold whose last receipt is at most this
 * old is still admitted (its new tunnel waits with the held ones) rather
 * than refused with RATE_LIMITED. Over the threshold is what a consumer
 * with many busy tunnels is most of the time, however promptly it signs:
 * what is on the way to it (each stream's window, the sockets' buffers,
 * over 16 MiB with 60 downloads) is carried here and not yet received and
 * metered there. Refused, a scraper's new requests got 429 (one in nine at
 * 60 workers fetching 2 MB pages). One receipt interval (5 s): a consumer
 * signs at least that often while it has traffic.
 */
export const SIGNING_RECENTLY_MS = 5 * second
/**
 * How far a receipt may run ahead of the bytes this exit carried for its
 * session, on top of as much again: uploads the consumer signed as it sent
 * them and that are still on the way (a stream window and a write buffer,
 * 2 MiB each, on each tunnel), and those that never came (a tunnel reset
 * mid-upload loses up to a window it signed, and the session keeps
 * them). An honest consumer stays far below carried × 2 + 1 GiB; a receipt
 * past it is refused. Without a bound the exit countersigned 2^64 bytes
 * for a session that had carried 100 KB, and published them.
 */
export const MAX_SIGNED_AHEAD = 1024 * 1024 * 1024
/** How long a receipt stream may sit without a frame. */
const STREAM_IDLE = 10 * minute
/** How long a graceful close of a receipt stream may wait for the consumer's side. */
const CLOSE_TIMEOUT = 5 * second
/**
 * Bytes a consumer may be let off per hour for tunnels cut mid-transfer:
 * what was in flight when its client went away never reached it, so it
 * cannot sign it, and without this a few cancelled downloads left an
 * honest consumer held at the threshold for good. A cheat gets this much
 * an hour per identity (and an identity costs a proof of work), and what it
 * earns by paying (FORGIVE_SHARE, up to FORGIVE_MAX at once); losses past
 * it are let off as it refills. What was earned goes with the consumer's
 * state once the sweep forgets an idle consumer: back to this much, the
 * safe side for the exit.
 */
export const FORGIVE_PER_HOUR = 16 * 1024 * 1024
/**
 * And one byte more for every this many it paid for here: a scraper whose
 * clients time out often loses a window with every cut (about 260 KB),
 * 120 such cuts in a few minutes passed the hourly allowance, and the
 * exit then held it at the threshold, idle or not, for an hour (200 small
 * pages took 295 s instead of 1.3). What a cheat gains so is a 32nd of
 * what it pays, and no more than FORGIVE_MAX at once.
 */
export const FORGIVE_SHARE = 32
/** The most that may be let off at once, earned with FORGIVE_SHARE. */
export const FORGIVE_MAX = 256 * 1024 * 1024
/**
 * How long after a cut tunnel its loss is counted: the consumer has signed
 * all it received by then (a receipt every 5 s at the latest, seen by a
 * once-a-second tick, and its round trip).
 */
const FORGIVE_DELAY = 8 * second
/** How long a consumer is held with no credit left before its tunnels are closed: over one receipt interval (5 s). */
const CUT_OFF_GRACE = 10 * second
/**
 * A consumer's receipts are published at once, not at the next interval,
 * when what it spent here unpublished reaches 1/PROMPT_PUBLISH_SHARE of the
 * credit it has left (see creditAtRisk).
 */
export const PROMPT_PUBLISH_SHARE = 10n
/** How long after a receipt could not be stored new tunnels are refused, unless one is stored first. */
export const STORE_RETRY_MS = 30 * second
/** Sessions a consumer may have at once; an honest one has one per exit at a time. */
export const MAX_SESSIONS_PER_CONSUMER = 64
/** How often idle sessions are forgotten (see sweep()). */
const SWEEP_INTERVAL = minute
/**
 * How long a session that owes bytes is kept unused, for a late receipt to
 * settle them (a consumer back from suspend, or whose link came back):
 * past it the consumer is gone (crashed, or its bytes were never going to
 * be signed), and its bytes are written off. Without a limit every consumer
 * that vanished owing a few bytes stayed in memory for good. A cheat gains
 * at most the threshold per identity this often, less than FORGIVE_PER_HOUR.
 */
export const OWED_SESSION_TTL = 60 * minute

export interface ExitSessionsInit {
  ledger: Ledger
  privateKey: PrivateKey
  /** Micro-credits per GB this exit charges; receipts must carry it. */
  pricePerGbMicro: bigint
  /** @default 4 MiB */
  unsignedThreshold?: number
  /** New tunnels are refused unless the balance is above this (micro-credits). @default 0 */
  creditLimitMicro?: bigint
  /** Difficulty a consumer's proof of work must meet for the allowance. */
  powDifficulty: number
  /** Publish a long session's receipt at most this often. @default 60 s */
  publishIntervalMs?: number
  /** Forget idle sessions this often. @default 60 s */
  sweepIntervalMs?: number
  /** Write off what an unused session owes after this long. @default 1 hour */
  owedSessionTtlMs?: number
  /** Count a cut tunnel's loss this long after it. @default 8 s */
  forgiveDelayMs?: number
  /** Close the tunnels of a consumer held with no credit left this long after. @default 10 s */
  cutOffGraceMs?: number
  publish?: (r: CountersignedReceipt) => Promise<void>
  now?: () => number
}

export interface ExitSessionsComponents {
  logger: ComponentLogger
}

interface Session {
  consumer: PeerId
  id: string
  /** Bytes metered here. */
  carried: number
  /**
   * What the stored receipt a session was rebuilt from (after a restart, or
   * once the sweep forgot it) signed: counted as carried, though part of it
   * may have been signed ahead of what came. The ahead allowance
   * (MAX_SIGNED_AHEAD) is on top of it, not on twice it: counting it in
   * twice let a consumer double what it could sign ahead with every
   * rebuild. 0 for a session that started here.
   */
  restored: number
  /** up + down of the newest receipt the consumer signed. */
  signed: number
  /**
   * `signed` as of the last receipt after which the consumer's balance still
   * paid for more. Once it pays for nothing, bytes carried past this are
   * carried for nothing, however promptly it signs them: a consumer signs an
   * upload as it sends it, before it gets here, so those bytes are never
   * unsigned here and the threshold alone never held an upload.
   */
  paid: number
  last?: CountersignedReceipt
  /** The receipt last published: what the rest of the network knows this session spent. */
  lastPublished?: CountersignedReceipt
  lastPublishedAt: number
  /** A publication of the newest receipt, due when the interval since the last one has passed. */
  publishTimer?: NodeJS.Timeout
  /** Carried, admitted or receipted since the last sweep (a flag, not a clock read per chunk). */
  touched: boolean
  /** When a sweep last found it touched (or it was made): it has been unused since about then. */
  usedAt: number
  /** When this exit first saw it (this run): it cannot have started much before. */
  openedAt: number
}

/** Bytes of the session carried here and not covered by a receipt. */
function owed (s: Session): number {
  return Math.max(0, s.carried - s.signed)
}

/** Whether a consumer with nothing left to pay with has been carried past what it paid for. */
function carriedUnpaid (c: ConsumerState): boolean {
  if (c.limit > 0) return false
  for (const s of c.sessions.values()) if (s.carried > s.paid) return true
  return false
}

interface ConsumerState {
  unsigned: number
  /**
   * Unsigned bytes carried before the consumer's tunnels are held: the
   * threshold, or less when its balance cannot pay for that many (see
   * limitFor). Set at admission and after each stored receipt.
   */
  limit: number
  waiters: Array<() => void>
  /** Running while the consumer is held with no credit left: its tunnels are closed when it fires. */
  cutOffTimer?: NodeJS.Timeout
  /** What may still be let off for cut tunnels (bytes), and when it was last topped up. */
  forgivable: number
  forgivableAt: number
  /** By session id: bytes lost with cut tunnels that the allowance has not covered yet. */
  lost: Map<string, number>
  /** By session id: looked up for every chunk carried, so no composite key is built. */
  sessions: Map<string, Session>
  /** Carried for since the last sweep, and when a sweep last found it so (as a session's). */
  touched: boolean
  usedAt: number
  /** Its budget of frames on the receipt protocol (see RECEIPT_BURST). */
  frames: TokenBucket
  /** Frames refused since the last one served: past a bucket's worth, its stream is reset. */
  refusedInARow: number
  /** When a receipt of it was last stored (see SIGNING_RECENTLY_MS). */
  lastReceiptAt?: number
}

export class ExitSessions implements ExitAccounting {
  private readonly log: Logger
  private readonly consumers = new Map<string, ConsumerState>()
  private readonly self: PeerId
  private readonly now: () => number
  private running = false
  /** How often a consumer's traffic was held for unsigned bytes. */
  holds = 0
  private registrar?: Pick<Registrar, 'handle' | 'unhandle'>
  private sweeper?: NodeJS.Timeout
  private readonly forgiveTimers = new Set<NodeJS.Timeout>()
  /** Publications under way: stop() waits for them, so none is cut off by libp2p stopping right after. */
  private readonly publishing = new Set<Promise<void>>()
  /** Receipts being checked and stored: stop() waits for them before the final publications. */
  private readonly receiving = new Set<Promise<ReceiptStreamMessage>>()
  /** Bytes let off for tunnels cut mid-transfer (for `status`). */
  forgiven = 0
  /** Frames on the receipt protocol refused for coming too fast (for `status`). */
  receiptsRefused = 0
  /**
   * Set while the ledger cannot store receipts (a full disk): what is
   * carried meanwhile is never paid for, since only a stored receipt is
   * countersigned, so new tunnels are refused (BUSY) until a receipt is
   * stored again, or STORE_RETRY_MS after the last failure (the next
   * tunnel's receipts try again). `since`: the first failure since a receipt was last stored.
   */
  storeFailure?: { since: number, at: number, error: string }
  private onRefusal?: (consumer: PeerId, reason: string) => void
  /** Closes a consumer's open tunnels (set by the exit, see setCutOff). */
  private cutOff?: (consumer: PeerId, reason: string) => void

  constructor (components: ExitSessionsComponents, private init: ExitSessionsInit) {
    this.log = components.logger.forComponent('spareband:accounting:exit')
    this.self = peerIdFromPrivateKey(init.privateKey)
    this.now = init.now ?? Date.now
  }

  get threshold (): number {
    return this.init.unsignedThreshold ?? DEFAULT_UNSIGNED_BYTES_THRESHOLD
  }

  /** The registrar comes at start: the exit service that meters through us is built before libp2p is. */
  async start (registrar: Pick<Registrar, 'handle' | 'unhandle'>): Promise<void> {
    if (this.running) return
    this.running = true
    this.registrar = registrar
    await registrar.handle(RECEIPT_PROTOCOL, (stream, connection) => {
      this.onStream(stream, connection).catch(err => {
        this.log.error('receipt stream failed - %e', err)
        stream.abort(err)
      })
    }, { runOnLimitedConnection: true, maxInboundStreams: MAX_RECEIPT_STREAMS })
    this.sweeper = setInterval(() => { this.sweep() }, this.init.sweepIntervalMs ?? SWEEP_INTERVAL)
    this.sweeper.unref()
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    clearInterval(this.sweeper)
    for (const t of this.forgiveTimers) clearTimeout(t)
    this.forgiveTimers.clear()
    for (const c of this.consumers.values()) clearTimeout(c.cutOffTimer)
    await this.registrar?.unhandle(RECEIPT_PROTOCOL)
    // receipts taken before the stop began are stored first; from now on every one is refused (see takeReceipt)
    while (this.receiving.size > 0) await Promise.allSettled([...this.receiving])
    // the last receipt of every session goes out before we leave, and so does one a timer or a receipt just sent off
    await Promise.allSettled([...this.allSessions()].map(async s => this.publishFinal(s)))
    // and any that started meanwhile
    while (this.publishing.size > 0) await Promise.allSettled([...this.publishing])
    for (const c of this.consumers.values()) for (const w of c.waiters.splice(0)) w()
  }

  /**
   * How to close a consumer's open tunnels: used when a consumer held with
   * no credit left stays so for CUT_OFF_GRACE, so that its clients see the
   * connection end instead of a transfer that stalls until the idle timeout.
   */
  setCutOff (cutOff: (consumer: PeerId, reason: string) => void): void {
    this.cutOff = cutOff
  }

  /** Told of each receipt refused (a forgery, a regression, one over the consumer's frame budget): the operator's notices. */
  setRefusalListener (listener: (consumer: PeerId, reason: string) => void): void {
    this.onRefusal = listener
  }

  /** Where countersigned receipts are published (receipt gossip). */
  setPublisher (publish: (r: CountersignedReceipt) => Promise<void>): void {
    this.init.publish = publish
  }

  /** Sessions held in memory, across consumers. */
  sessionCount (): number {
    let n = 0
    for (const c of this.consumers.values()) n += c.sessions.size
    return n
  }

  /**
   * Forgets sessions nobody uses, so memory stays bounded by what is in use
   * (sessions are made on admission, before the policy check, and ended
   * sessions were kept for ever). A session goes after one untouched
   * interval once its receipts cover what was carried (its newest receipt
   * published first); if it comes back, it goes on from its stored receipt
   * (see session()). One that owes bytes stays, as the only record a late
   * receipt can settle them against, until it has been unused for
   * OWED_SESSION_TTL: then what it owes is written off and it goes too. A
   * consumer goes with its last session once it owes nothing and nothing
   * waits on it.
   */
  sweep (): void {
    const now = this.now()
    const ttl = this.init.owedSessionTtlMs ?? OWED_SESSION_TTL
    for (const [key, c] of this.consumers) {
      // losses past the allowance, let off as it refills
      this.letOffWaiting(c)
      for (const [id, s] of c.sessions) {
        if (s.touched) {
          s.touched = false
          s.usedAt = now
          continue
        }
        if (s.publishTimer != null) continue
        // a session that owes bytes stays: a receipt may still come for it
        // (a consumer back from suspend), and only its record can take those
        // bytes off the consumer's unsigned count (the 64-session cap bounds them);
        // until it has been unused so long that its consumer is surely gone
        if (owed(s) > 0) {
          if (now - s.usedAt < ttl) continue
          this.log('writing off %d bytes %p owes on a session unused for %d s', owed(s), s.consumer, Math.round((now - s.usedAt) / 1000))
          c.unsigned = Math.max(0, c.unsigned - owed(s))
          s.carried = s.signed
          c.lost.delete(id)
          this.release(c)
        }
        if (s.last != null && s.last !== s.lastPublished) void this.publish(s)
        clearTimeout(s.publishTimer)
        c.sessions.delete(id)
      }
      if (c.touched) {
        c.touched = false
        c.usedAt = now
      } else if (c.sessions.size === 0 && c.unsigned > 0 && now - c.usedAt >= ttl) {
        // what is left was carried on tunnels without a session (a consumer that
        // keeps no accounting): no receipt can ever cover it
        this.log('writing off %d bytes carried without a session, unused for %d s', c.unsigned, Math.round((now - c.usedAt) / 1000))
        c.unsigned = 0
        this.release(c)
      }
      // kept while its allowances for cut tunnels and receipt frames are refilling: forgetting it would reset them
      if (c.sessions.size === 0 && c.unsigned === 0 && c.waiters.length === 0 && this.topUp(c) >= FORGIVE_PER_HOUR && c.frames.available >= RECEIPT_BURST) this.consumers.delete(key)
    }
  }

  /** Bytes carried but not yet signed, per consumer (for `balance`). */
  pendingBytes (): number {
    let n = 0
    for (const c of this.consumers.values()) n += c.unsigned
    return n
  }

  private consumerState (consumer: string): ConsumerState {
    let c = this.consumers.get(consumer)
    if (c == null) {
      c = {
        unsigned: 0,
        limit: this.threshold,
        waiters: [],
        sessions: new Map(),
        forgivable: FORGIVE_PER_HOUR,
        forgivableAt: this.now(),
        lost: new Map(),
        touched: true,
        usedAt: this.now(),
        frames: new TokenBucket({ rate: RECEIPTS_PER_SECOND, burst: RECEIPT_BURST, now: this.init.now }),
        refusedInARow: 0
      }
      this.consumers.set(consumer, c)
    }
    return c
  }

  /** The newest receipt of the session this exit stored, if any. */
  private storedReceipt (consumer: PeerId, id: string): ReturnType<Ledger['get']> {
    return this.init.ledger.get(receiptId({ sessionId: id, consumer: consumer.toMultihash().bytes, exit: this.self.toMultihash().bytes }))
  }

  private session (consumer: PeerId, c: ConsumerState, id: string): Session {
    let s = c.sessions.get(id)
    if (s == null) {
      s = { consumer, id, carried: 0, restored: 0, signed: 0, paid: 0, lastPublishedAt: this.now(), touched: true, usedAt: this.now(), openedAt: this.now() }
      // a session the sweep forgot (or one from before a restart) goes on
      // from its stored receipt: what that receipt signed was carried, and
      // the next receipt must go past it; starting again from nothing would
      // let the old total sign off as many new bytes for free
      const stored = this.storedReceipt(consumer, id)
      if (stored != null) {
        s.carried = s.signed = s.paid = s.restored = Number(stored.receipt.bytesUp + stored.receipt.bytesDown)
        s.last = stored.receipt
        s.lastPublished = stored.receipt
      }
      c.sessions.set(id, s)
    }
    return s
  }

  private * allSessions (): Iterable<Session> {
    for (const c of this.consumers.values()) yield * c.sessions.values()
  }

  admit (consumer: PeerId, sessionId: string): { status: TunnelStatus, message: string } | undefined {
    const failure = this.storeFailure
    if (failure != null && this.now() - failure.at < STORE_RETRY_MS) {
      return { status: TunnelStatus.BUSY, message: `this exit cannot store receipts now (${failure.error}): it takes no new tunnels until it can` }
    }
    const c = this.consumers.get(consumer.toString())
    // a consumer that is signing is let in past the threshold: its new
    // tunnel is held with the others (meter, the pipe's gate) until its
    // receipts catch up, so no more is at risk; one that is not is refused
    if (c != null && c.unsigned > this.threshold && !this.signingRecently(c)) {
      const lost = [...c.lost.values()].reduce((a, b) => a + b, 0)
      // a consumer that signed all it got is told why it is held all the same
      const why = lost > 0 ? `, ${lost} of them lost with tunnels cut mid-transfer past what this exit lets off (${FORGIVE_PER_HOUR} bytes an hour, and 1/${FORGIVE_SHARE} of what is paid for)` : ''
      return { status: TunnelStatus.RATE_LIMITED, message: `${c.unsigned} bytes carried but not signed (limit ${this.threshold})${why}: send receipts` }
    }
    const b = this.init.ledger.balance(consumer)
    const limit = this.init.creditLimitMicro ?? 0n
    // above the limit, not at it: with the default limit of 0 an identity
    // that never showed its proof of work (no allowance, nothing earned) has
    // nothing to pay with, and keys cost nothing to make
    if (b.balanceMicro <= limit) {
      const fresh = b.allowanceMicro === 0n && b.earnedMicro === 0n && b.spentMicro === 0n
      return {
        status: TunnelStatus.INSUFFICIENT_CREDIT,
        message: fresh
          ? `no proof of work on record for this identity, so no allowance: balance 0 is not above this exit's credit limit of ${formatCredits(limit)}`
          : `balance ${formatCredits(b.balanceMicro)} credits, as this exit's ledger has it, is not above its credit limit of ${formatCredits(limit)}`
      }
    }
    const state = this.consumerState(consumer.toString())
    state.limit = this.limitFor(b.balanceMicro)
    if (sessionId !== '') {
      if (!state.sessions.has(sessionId) && state.sessions.size >= MAX_SESSIONS_PER_CONSUMER) {
        return { status: TunnelStatus.RATE_LIMITED, message: `${state.sessions.size} sessions open at this exit (at most ${MAX_SESSIONS_PER_CONSUMER}): reuse one` }
      }
      this.session(consumer, state, sessionId).touched = true
    }
    return undefined
  }

  meter (consumer: PeerId, sessionId: string, _direction: MeterDirection, bytes: number, queued = 0): Promise<void> | undefined {
    const c = this.consumerState(consumer.toString())
    c.touched = true
    c.frames.add(bytes / BYTES_PER_RECEIPT)
    if (sessionId !== '') {
      // the consumer counts uploads as it sends them, so its receipts can cover
      // bytes before they get here: those are not unsigned when they arrive
      const s = this.session(consumer, c, sessionId)
      s.touched = true
      const before = owed(s)
      s.carried += bytes
      c.unsigned += owed(s) - before
    } else c.unsigned += bytes
    // bytes still queued on our side have not reached the consumer: it cannot have signed them yet
    if (!this.mustHold(c, queued)) return undefined
    // hold this tunnel until a receipt brings the consumer back under its limit
    return this.hold(c, consumer)
  }

  /** Whether a receipt of this consumer was stored within SIGNING_RECENTLY_MS. */
  private signingRecently (c: ConsumerState): boolean {
    return c.lastReceiptAt != null && this.now() - c.lastReceiptAt <= SIGNING_RECENTLY_MS
  }

  /**
   * How many bytes a consumer with this balance may be carried unsigned:
   * the threshold, or what the balance above the credit limit pays for at
   * our price, if less. A ledger credits an exit only what the consumer can
   * pay, so without this a consumer admitted with a micro-credit left could
   * be carried without end, as long as it signed, all of it unpaid.
   */
  private limitFor (balanceMicro: bigint): number {
    const room = balanceMicro - (this.init.creditLimitMicro ?? 0n)
    if (room <= 0n) return 0
    const price = this.init.pricePerGbMicro
    if (price === 0n) return this.threshold
    const bytes = room * BYTES_PER_GB / price
    return bytes < BigInt(this.threshold) ? Number(bytes) : this.threshold
  }

  /**
   * Whether the consumer's tunnels must wait: more carried unsigned than its
   * limit (less `queued`, bytes still on our side), or, with no credit left,
   * anything carried past what it paid for.
   */
  private mustHold (c: ConsumerState, queued: number): boolean {
    return c.unsigned - queued > c.limit || carriedUnpaid(c)
  }

  /** A promise settled when the consumer is back under the threshold (see release()). */
  private hold (c: ConsumerState, consumer: PeerId): Promise<void> {
    if (c.waiters.length === 0) {
      this.holds++
      if (carriedUnpaid(c)) this.log('holding %p: out of credit, and carried past what it paid for', consumer)
      else this.log('holding %p: %d bytes unsigned%s', consumer, c.unsigned, c.limit < this.threshold ? `, and its balance pays for ${c.limit} more` : '')
    }
    this.armCutOff(c, consumer)
    return new Promise<void>(resolve => { c.waiters.push(resolve) })
  }

  /**
   * Held with nothing left to pay with: no receipt can release it, so its
   * tunnels are closed after a grace (long enough for the consumer's last
   * receipt, at most one interval away, to land), unless credit comes.
   */
  private armCutOff (c: ConsumerState, consumer: PeerId): void {
    if (c.limit === 0 && c.cutOffTimer == null && this.cutOff != null) {
      c.cutOffTimer = setTimeout(() => {
        c.cutOffTimer = undefined
        if (c.waiters.length === 0 || !this.running) return
        // credit may have come meanwhile other than by a receipt here (gossip of its earnings, say)
        try {
          c.limit = this.limitFor(this.init.ledger.balance(consumer).balanceMicro)
        } catch (err: any) {
          this.log.error('could not read the balance of %p - %e', consumer, err)
        }
        if (c.limit > 0) {
          this.release(c)
          return
        }
        this.log('closing the tunnels of %p: out of credit', consumer)
        this.cutOff?.(consumer, 'the consumer is out of credit')
        // the tunnels are closing: their held chunks are dropped, not carried
        for (const w of c.waiters.splice(0)) w()
      }, this.init.cutOffGraceMs ?? CUT_OFF_GRACE)
      c.cutOffTimer.unref()
    }
  }

  /** Lets the consumer's held tunnels go on once it is back under its limit. */
  private release (c: ConsumerState): void {
    if (!this.mustHold(c, 0)) for (const w of c.waiters.splice(0)) w()
  }

  tunnelEnded (consumer: PeerId, sessionId: string, bytesOut: number, reset: boolean): void {
    if (!reset || sessionId === '' || bytesOut === 0 || !this.running) return
    const t = setTimeout(() => {
      this.forgiveTimers.delete(t)
      this.forgive(consumer, sessionId, bytesOut)
    }, this.init.forgiveDelayMs ?? FORGIVE_DELAY)
    t.unref()
    this.forgiveTimers.add(t)
  }

  /**
   * Lets the consumer off what its session still owes, up to what the cut
   * tunnel carried and what its hourly allowance for this has left: by now
   * it has signed all it received, so what is owed was lost on the way.
   */
  private forgive (consumer: PeerId, sessionId: string, bytesOut: number): void {
    const c = this.consumers.get(consumer.toString())
    const s = c?.sessions.get(sessionId)
    if (c == null || s == null) return
    this.letOff(c, s, bytesOut)
  }

  /**
   * Lets `lost` bytes of session `s` off, as far as the allowance goes; what
   * it does not cover waits in `c.lost` for the sweeps to let off as the
   * allowance refills (else a consumer past it would be held for good).
   */
  private letOff (c: ConsumerState, s: Session, lost: number): void {
    const due = Math.min(lost, owed(s))
    const amount = Math.min(due, this.topUp(c))
    if (amount > 0) {
      s.carried -= amount
      c.unsigned = Math.max(0, c.unsigned - amount)
      c.forgivable -= amount
      this.forgiven += amount
      this.log('let %p off %d bytes lost with a cut tunnel', s.consumer, amount)
      this.release(c)
    }
    const left = due - amount
    if (left > 0) c.lost.set(s.id, left)
    else c.lost.delete(s.id)
  }

  /**
   * The consumer's allowance for cut tunnels, refilled for the time since it
   * was last looked at: time alone fills it up to FORGIVE_PER_HOUR, what it
   * earned by paying (earnForgiveness) may hold it above.
   */
  private topUp (c: ConsumerState): number {
    const now = this.now()
    c.forgivable = Math.max(c.forgivable, Math.min(FORGIVE_PER_HOUR, c.forgivable + Math.floor((now - c.forgivableAt) * FORGIVE_PER_HOUR / (60 * minute))))
    c.forgivableAt = now
    return c.forgivable
  }

  /** Adds a FORGIVE_SHARE of `paid` bytes to the consumer's allowance for cut tunnels, and lets off what waited for it. */
  private earnForgiveness (c: ConsumerState, paid: number): void {
    this.topUp(c)
    c.forgivable = Math.min(FORGIVE_MAX, c.forgivable + Math.floor(paid / FORGIVE_SHARE))
    this.letOffWaiting(c)
  }

  /** Lets off what the consumer's sessions lost past the allowance, as far as it now goes (see letOff). */
  private letOffWaiting (c: ConsumerState): void {
    for (const [id, lost] of c.lost) {
      const s = c.sessions.get(id)
      if (s == null) c.lost.delete(id)
      else this.letOff(c, s, lost)
    }
  }

  gate (consumer: PeerId, queued = 0): Promise<void> | undefined {
    const c = this.consumers.get(consumer.toString())
    // the same test as meter()'s hold, made before the chunk goes out: a
    // consumer held on one tunnel gets nothing more on any other
    if (c == null || !this.mustHold(c, queued)) return undefined
    return this.hold(c, consumer)
  }

  private async onStream (stream: Stream, connection: Connection): Promise<void> {
    const consumer = connection.remotePeer
    const lp = boundedLpStream(stream, { maxDataLength: MAX_FRAME, maxBufferSize: MAX_READ_BUFFER })
    // one idle timer for the stream, pushed back by every frame: a timeout
    // signal per read (a frame per MiB carried) is garbage the data path pays for
    const idle = new AbortController()
    const idleTimer = setTimeout(() => idle.abort(new Error('receipt stream idle')), STREAM_IDLE)
    idleTimer.unref()
    // the session's receipts so far stand, however the stream ends
    let ended: Error | undefined
    try {
      // a write to a consumer that reset the stream ends the session like its end of stream does
      ended = await this.serveReceipts(consumer, lp, idle.signal, idleTimer)
    } catch (err: any) {
      ended = err
      this.log('receipt stream from %p broke - %e', consumer, err)
    } finally {
      clearTimeout(idleTimer)
    }
    for (const s of this.consumers.get(consumer.toString())?.sessions.values() ?? []) {
      await this.publishFinal(s).catch(() => {})
    }
    if (ended != null) {
      // a bad frame, an idle or broken stream: reset it, rather than wait for a peer that may never close its side
      stream.abort(ended)
      return
    }
    await stream.close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT) }).catch(() => stream.abort(new Error('close timed out')))
  }

  /**
   * Answers the consumer's frames until the stream ends: undefined when the
   * consumer closed its side, else why it ended (idle, or a frame that breaks
   * the framing).
   */
  private async serveReceipts (consumer: PeerId, lp: ReturnType<typeof lpStream>, idle: AbortSignal, idleTimer: NodeJS.Timeout): Promise<Error | undefined> {
    while (true) {
      let frame
      try {
        frame = await lp.read({ signal: idle })
        idleTimer.refresh()
      } catch (err: any) {
        if (err?.name === 'UnexpectedEOFError') return undefined
        this.log('receipt stream from %p ends - %s', consumer, err?.message)
        return err instanceof Error ? err : new Error(String(err))
      }
      // before anything is done with the frame, so a refused one costs next to nothing
      const budget = this.takeFrame(consumer)
      if (budget === 'reset') return new Error(`${RECEIPT_BURST} frames refused in a row and more sent`)
      if (budget === 'refuse') {
        await lp.write(ReceiptStreamMessage.encode({ error: TOO_MANY_RECEIPTS }))
        continue
      }
      let msg: ReceiptStreamMessage
      try {
        msg = ReceiptStreamMessage.decode(frame)
      } catch {
        await lp.write(ReceiptStreamMessage.encode({ error: 'undecodable frame' }))
        continue
      }
      if (msg.powNonce != null && msg.powDifficulty != null) this.onPow(consumer, msg.powNonce, msg.powDifficulty)
      if (msg.receipt != null) {
        const reply = await this.takeReceipt(consumer, msg.receipt)
        await lp.write(ReceiptStreamMessage.encode(reply))
      } else {
        // a hello: the ack tells the consumer its allowance is known before its first tunnel,
        // and gives back the receipts of its other sessions (see latestFor)
        const latest = this.latestFor(consumer)
        await lp.write(ReceiptStreamMessage.encode({ pricePerGb: this.init.pricePerGbMicro, ...(latest.length > 0 ? { latest: { receipts: latest } } : {}) }))
      }
    }
  }

  /**
   * The newest countersigned receipts of the consumer's sessions held here,
   * newest first, as many as fit LATEST_BYTES. A consumer sends a hello with
   * each new session, so one restarted after a kill gets back the answers
   * that were on their way when it died: its own ledger lacked them for good
   * (a restart walkthrough: 48 receipts of 25 sessions), and its balance
   * read higher than the exit's. They carry its own signature, so it checks
   * them as any answer.
   */
  private latestFor (consumer: PeerId): Array<Uint8Array<ArrayBuffer>> {
    const c = this.consumers.get(consumer.toString())
    if (c == null) return []
    const lasts = [...c.sessions.values()].flatMap(s => s.last == null ? [] : [s.last]).sort((a, b) => Number(b.updatedAt - a.updatedAt))
    const out: Array<Uint8Array<ArrayBuffer>> = []
    let size = 0
    for (const r of lasts) {
      const encoded = new Uint8Array(encodeReceipt(r))
      if (size + encoded.byteLength + 4 > LATEST_BYTES) break
      out.push(encoded)
      size += encoded.byteLength + 4
    }
    return out
  }

  /**
   * Takes a frame from the consumer's budget (see RECEIPT_BURST): 'serve',
   * 'refuse' (answered with an error: receipts are cumulative, so the
   * consumer's next one covers the same bytes), or 'reset' once it has been
   * refused a bucket's worth in a row and sends on; so is every stream it
   * opens after that, at its first refused frame, until one is served.
   */
  private takeFrame (consumer: PeerId): 'serve' | 'refuse' | 'reset' {
    const c = this.consumerState(consumer.toString())
    if (c.frames.tryTake(1)) {
      c.refusedInARow = 0
      return 'serve'
    }
    this.receiptsRefused++
    c.refusedInARow++
    // one line per run of refusals and one per reset, not one per frame
    if (c.refusedInARow === 1) {
      this.log('refusing receipts from %p: too many', consumer)
      this.onRefusal?.(consumer, TOO_MANY_RECEIPTS)
    }
    if (c.refusedInARow <= RECEIPT_BURST) return 'refuse'
    this.log('resetting a receipt stream of %p: %d frames refused in a row', consumer, c.refusedInARow)
    return 'reset'
  }

  private onPow (consumer: PeerId, nonceBytes: Uint8Array, difficulty: number): void {
    const nonce = decodePowNonce(nonceBytes)
    if (nonce == null || difficulty < this.init.powDifficulty) return
    if (!verifyPow(consumer.toMultihash().bytes, nonce, difficulty)) {
      this.log('invalid proof of work from %p', consumer)
      return
    }
    try {
      this.init.ledger.recordPow(consumer, nonce, difficulty)
    } catch (err: any) {
      this.log('proof of work from %p not recorded - %e', consumer, err)
    }
  }

  /**
   * Answers a receipt, unless this exit is stopping. A receipt stream stays
   * open after stop() (until libp2p closes the connection, after it has
   * stopped gossip), and a receipt countersigned on it then was answered,
   * so its consumer counted it as spent, but published to no one: the rest
   * of the network never heard of it. Refused, it is counted nowhere, as if
   * it had come a moment later, with the connection gone.
   */
  private async takeReceipt (consumer: PeerId, bytes: Uint8Array): Promise<ReceiptStreamMessage> {
    if (!this.running) return { error: 'this exit is stopping: its final receipts are published, and it countersigns no more' }
    const taking = this.onReceipt(consumer, bytes)
    this.receiving.add(taking)
    try {
      return await taking
    } finally {
      this.receiving.delete(taking)
    }
  }

  private async onReceipt (consumer: PeerId, bytes: Uint8Array): Promise<ReceiptStreamMessage> {
    try {
      const r = decodeReceipt(bytes)
      if (r.consumer == null || !ed25519PeerFromBytes(r.consumer, 'consumer').equals(consumer)) throw new Error('receipt of another consumer')
      if (r.exit == null || !ed25519PeerFromBytes(r.exit, 'exit').equals(this.self)) throw new Error('receipt for another exit')
      if (r.pricePerGb !== this.init.pricePerGbMicro) throw new Error(`price ${r.pricePerGb} is not this exit's ${this.init.pricePerGbMicro} micro-credits/GB`)
      const c = this.consumerState(consumer.toString())
      // one from before a restart (or that the sweep forgot) goes on from its stored receipt: its
      // consumer still owes for what was carried after that, and sends the receipt for it
      const s = c.sessions.get(r.sessionId!) ?? (this.storedReceipt(consumer, r.sessionId!) != null ? this.session(consumer, c, r.sessionId!) : undefined)
      if (s == null) throw new Error(`unknown session ${r.sessionId}`)
      s.touched = true
      if (s.last != null && r.seq! <= s.last.seq) throw new Error(`seq ${r.seq} does not advance past ${s.last.seq}`)
      // a consumer signs an upload as it sends it, so a receipt may run ahead
      // of what got here (MAX_SIGNED_AHEAD); not by far more, or this exit
      // would countersign (and publish) bytes it never carried
      const signedTotal = r.bytesUp! + r.bytesDown!
      const most = s.restored + 2 * (s.carried - s.restored) + MAX_SIGNED_AHEAD
      if (signedTotal > BigInt(most)) {
        const carried = s.restored > 0 ? `${s.carried - s.restored} were carried here since its stored receipt for ${s.restored}` : `${s.carried} were carried here`
        throw new Error(`receipt signs ${signedTotal} bytes, but ${carried}: at most ${most} can be signed (twice that, plus ${MAX_SIGNED_AHEAD} for uploads on the way or lost)`)
      }
      const ahead = Number(r.updatedAt!) - this.now()
      if (ahead > MAX_CLOCK_AHEAD_MS) throw new Error(`updated_at is ${Math.round(ahead / 1000)} s ahead of this exit's clock`)
      // a session's start is fixed by its first receipt (the ledger refuses
      // another), and nodes that pruned gossip refuse sessions they do not
      // hold that started long ago (Ledger.pruneGossip): a start made up
      // far back would hide what the consumer spends here from them, and it
      // would look richer to other exits. A clock as far behind ours as one
      // may be ahead is let through
      const behind = s.openedAt - Number(r.startedAt!)
      if (s.last == null && behind > MAX_CLOCK_AHEAD_MS) throw new Error(`started_at is ${Math.round(behind / 1000)} s before this exit first saw the session`)
      // checks the consumer's signature first: we must not vouch for a forgery
      const full = verifyAndCountersign(r, this.init.privateKey)
      // the ledger has the last word (counters that regress, a session id
      // reused with another start): only a stored receipt signs bytes off
      try {
        await this.init.ledger.recordReceipt(full, 'own', { verified: true })
      } catch (err) {
        if (err instanceof LedgerError && err.code === LedgerErrorCode.IO) this.noteStoreFailure(err)
        throw err
      }
      if (this.storeFailure != null) {
        this.log('receipts are stored again (failing since %s)', new Date(this.storeFailure.since).toISOString())
        this.storeFailure = undefined
      }
      s.last = full
      c.lastReceiptAt = this.now()
      const total = Number(signedTotal)
      // the receipt spent some of the consumer's balance (and gossip may have added to it)
      const balanceMicro = this.init.ledger.balance(consumer).balanceMicro
      c.limit = this.limitFor(balanceMicro)
      // only bytes carried here can be signed off; the rest is credited as it
      // arrives (meter): uploads the consumer signed before they got here. But
      // only while its balance pays: else one receipt for a terabyte, which no
      // balance pays, had the exit carry that terabyte unheld
      const before = owed(s)
      const paidBefore = s.paid
      s.signed = Math.max(s.signed, c.limit > 0 ? total : Math.min(total, s.carried))
      if (c.limit > 0) s.paid = s.signed
      c.unsigned = Math.max(0, c.unsigned - (before - owed(s)))
      if (s.paid > paidBefore) this.earnForgiveness(c, s.paid - paidBefore)
      this.release(c)
      // held since before its credit ran out (by this receipt): no new hold starts the cut-off
      if (c.waiters.length > 0) this.armCutOff(c, consumer)
      if (this.creditAtRisk(c, balanceMicro)) {
        for (const other of c.sessions.values()) void this.publish(other)
      } else {
        this.publishSoon(s)
      }
      return { receipt: Uint8Array.from(encodeReceipt(full)) }
    } catch (err: any) {
      this.log('refused a receipt from %p: %s', consumer, err.message)
      this.onRefusal?.(consumer, err.message ?? String(err))
      // with our price: a consumer that signed at another (it found us without our ad) signs again at ours
      return { error: err.message ?? String(err), pricePerGb: this.init.pricePerGbMicro }
    }
  }

  private noteStoreFailure (err: Error): void {
    const now = this.now()
    if (this.storeFailure == null) this.log.error('cannot store receipts, so new tunnels are refused - %e', err)
    this.storeFailure = { since: this.storeFailure?.since ?? now, at: now, error: err.message }
  }

  private async publish (s: Session): Promise<void> {
    clearTimeout(s.publishTimer)
    s.publishTimer = undefined
    if (s.last == null || s.last === s.lastPublished || this.init.publish == null) return
    s.lastPublished = s.last
    s.lastPublishedAt = this.now()
    const publish = this.init.publish
    const last = s.last
    // a publisher that throws rather than rejects is caught the same
    const sent = Promise.resolve().then(async () => publish(last)).catch(err => this.log('could not publish a receipt - %e', err))
    this.publishing.add(sent)
    try {
      await sent
    } finally {
      this.publishing.delete(sent)
    }
  }

  /**
   * Whether what the consumer spent here and the network has not heard of
   * yet is a large share (1 / PROMPT_PUBLISH_SHARE or more) of the credit it
   * has left above the credit limit, as this exit's ledger sees it. Other
   * exits learn what it spends here only from gossip, so until then each of
   * them lets it spend that credit again: with publications once an
   * interval, a consumer that ignores its own balance got its whole
   * allowance at every exit it used. Published at once instead, the credit
   * spent twice shrinks with what is left, down to about a receipt per exit,
   * and a consumer with plenty of credit still costs the network one
   * publication an interval.
   */
  private creditAtRisk (c: ConsumerState, balanceMicro: bigint): boolean {
    const price = this.init.pricePerGbMicro
    if (price === 0n) return false
    const room = balanceMicro - (this.init.creditLimitMicro ?? 0n)
    let unpublished = 0
    for (const s of c.sessions.values()) {
      const published = s.lastPublished
      if (s.last != null && s.last !== published) unpublished += Number(s.last.bytesUp + s.last.bytesDown - (published == null ? 0n : published.bytesUp + published.bytesDown))
    }
    if (unpublished <= 0) return false
    return room <= 0n || BigInt(unpublished) * price * PROMPT_PUBLISH_SHARE >= room * BYTES_PER_GB
  }

  /**
   * A long session's newest receipt goes out at most once per interval, and
   * at the latest one interval after it arrived (not only when the next
   * receipt happens to come), so followers are never more than an interval
   * behind a session that went quiet.
   */
  private publishSoon (s: Session): void {
    // stopping: a receipt taken as the stop began, which stop() waits for;
    // published now, with the final publications
    if (!this.running) {
      void this.publish(s)
      return
    }
    const wait = s.lastPublishedAt + (this.init.publishIntervalMs ?? 60 * second) - this.now()
    if (wait <= 0) {
      void this.publish(s)
      return
    }
    if (s.publishTimer != null) return
    s.publishTimer = setTimeout(() => {
      s.publishTimer = undefined
      void this.publish(s)
    }, wait)
    s.publishTimer.unref()
  }

  private async publishFinal (s: Session): Promise<void> {
    await this.publish(s)
  }
}
