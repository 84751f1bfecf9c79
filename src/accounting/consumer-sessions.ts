/**
 * The consumer's side of accounting: one session per exit it uses. Every
 * tunnel to that exit carries the session id; the consumer meters the bytes
 * and signs a cumulative receipt every 1 MiB or 5 s, whichever comes first,
 * on one `/spareband/receipt/1.0.0` stream. The exit's countersigned copy
 * goes into the ledger: that is what the consumer has spent.
 *
 * Receipts are pipelined: a new one goes out without waiting for the
 * answer to the last (up to MAX_IN_FLIGHT), and a reader takes the answers
 * in order. Waiting for each round trip would let the exit's count of
 * unsigned bytes climb past its threshold on a fast tunnel, and the exit
 * would then hold our traffic.
 *
 * A session ends after a quiet spell with none of its tunnels open (or when
 * the node stops): its last receipt is signed and the stream closed, which
 * tells the exit to publish the final receipt. The next tunnel starts a new
 * session.
 */

import { randomBytes } from 'node:crypto'
import { boundedLpStream } from '../length-prefixed.ts'
import type { lpStream } from '@libp2p/utils'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { NoticeLimiter } from '../notice-limiter.ts'
import { RECEIPT_PROTOCOL, second } from '../constants.ts'
import { countersignedAnswer, decodeReceipt, ed25519PeerFromBytes, encodeReceipt, signAsConsumer } from './receipts.ts'
import { costMicro, encodePowNonce, formatCredits } from './credits.ts'
import { OwnCredit } from './own-credit.ts'
import { LedgerError, LedgerErrorCode, ReceiptError } from './errors.ts'
import { ReceiptStreamMessage } from './pb/receipt-stream.ts'
import { DEFAULT_PRICE_PER_GB_MICRO, DEFAULT_RECEIPT_INTERVAL_BYTES, DEFAULT_RECEIPT_INTERVAL_MS } from './constants.ts'
import type { ConsumerAccounting, MeterDirection } from '../relay/accounting-hooks.ts'
import type { Ledger } from './ledger.ts'
import type { CountersignedReceipt, SignedReceipt } from './receipts.ts'
import type { AbortOptions, ComponentLogger, Logger, PeerId, PrivateKey, Stream } from '@libp2p/interface'

const MAX_FRAME = 2048
/** Receipts sent and not yet answered, per session. */
const MAX_IN_FLIGHT = 8
/** Error lines a minute for receipts the ledger could not write (see onAnswer). */
const UNRECORDED_NOTICES_PER_MINUTE = 5
const REPLY_TIMEOUT = 15 * second
/** How long the ack of a hello may take (a tunnel waits for it). */
const HELLO_TIMEOUT = 5 * second
/** The longest a tunnel waits for a new identity's proof of work. */
const POW_WAIT = 10 * second
/**
 * How long a session whose bytes no receipt could cover (its exit is gone:
 * stopped, crashed, unreachable) is kept trying, with no tunnel open and no
 * traffic, before it is closed all the same. An exit back within it (a
 * restart) still gets its receipt; without a limit the session, and a dial
 * every second, stayed for every exit that vanished owing us a receipt.
 */
export const DEFAULT_UNSIGNED_GIVE_UP_MS = 10 * 60 * second

export interface ConsumerSessionsInit {
  ledger: Ledger
  privateKey: PrivateKey
  /** The exit's advertised price, micro-credits per GB. */
  priceOf?: (exit: PeerId) => bigint | undefined
  /** @default 1 MiB */
  intervalBytes?: number
  /** @default 5 s */
  intervalMs?: number
  /**
   * How long the exit may take to answer a receipt. Past it the stream is
   * reset, dropping what waits for an answer on it, and the next receipt
   * opens another. @default 15 s
   */
  replyTimeoutMs?: number
  /** A session with no traffic for this long is closed. @default 30 s */
  sessionIdleMs?: number
  /** A session with no traffic for this long is closed even with bytes no receipt covers. @default 10 min */
  unsignedGiveUpMs?: number
  /** Our proof of work, once solved. */
  pow?: () => { nonce: bigint, difficulty: number } | undefined
  /**
   * Settles when our proof of work is solved (a new identity solves it in
   * the background, a second or two). Tunnels wait for it, up to
   * `powWaitMs`: without it an exit counts no allowance for us and refuses
   * our next tunnel as soon as we have spent anything. A function is asked
   * at every wait: a node whose start failed and is tried again solves anew.
   */
  powSolved?: Promise<unknown> | (() => Promise<unknown>)
  /** @default 10 s */
  powWaitMs?: number
  /**
   * Our own balance (micro-credits, as our ledger has it) that we stop at:
   * no new tunnel while it is not above this, and the open ones are ended
   * once it is not (see outOfCredit, setCutOff). Each exit judges us by its
   * own ledger, which hears of what we spent at the others only through
   * gossip, a minute or so later: without this stop, tunnels spread over
   * several exits were carried well past what we could pay (1.3 GB on a
   * 1-credit allowance over three exits). Undefined: no stop.
   */
  stopAtBalanceMicro?: bigint
  /** How this node can earn (or go on), said after outOfCredit()'s reason: whether it runs an exit is the node's to say. */
  outOfCreditAdvice?: string
  now?: () => number
}

/** How long a reading of our balance for outOfCredit() holds: a ledger read commits the writes it has deferred. */
export const CREDIT_CHECK_MS = second

export interface ConsumerSessionsComponents {
  logger: ComponentLogger
  dialProtocol: (peer: PeerId, protocol: string, options: AbortOptions & { runOnLimitedConnection?: boolean }) => Promise<Stream>
}

/** What the next answer on the stream is for: answers come in the order of requests. */
interface Expected {
  receipt?: SignedReceipt
  resolve: () => void
  reject: (err: Error) => void
  /**
   * The answer was our receipt, but the ledger refused the exit's signature
   * when it came to write it: the receipt's bytes are owed again.
   */
  uncovered?: () => void
}

interface Channel {
  lp: ReturnType<typeof lpStream>
  stream: Stream
  expected: Expected[]
  broken?: Error
}

interface Session {
  id: string
  exit: PeerId
  startedAt: bigint
  price: bigint
  up: number
  down: number
  /** up + down covered by the newest receipt sent. */
  sentTotal: number
  seq: bigint
  /** updatedAt of the newest receipt signed (ms). */
  updatedAt: number
  /** When (this.now()) the newest receipt was signed: the interval runs from it. */
  signedAt: number
  lastActivity: number
  /** Receipts written and not yet answered (at most MAX_IN_FLIGHT). */
  inFlight: number
  /** Tunnels opened on this session and not yet ended: it is not closed while any is open, however quiet. */
  openTunnels: number
  channel?: Promise<Channel>
  /** Serialises writes on the stream (not their answers). */
  sending?: Promise<void>
  sentPow: boolean
  /** The hello under way, which every tunnel that asks meanwhile waits for (not one after another). */
  helloing?: Promise<void>
  closed: boolean
  /** Whether the exit countersigned a receipt of this session: its price is fixed then. */
  countersigned: boolean
  /** What the newest receipt we signed for this session costs us (micro-credits). */
  chargedMicro: bigint
  /** What the newest receipt the exit countersigned costs us: the ledger holds it (or will, with its next write). */
  countersignedMicro: bigint
}

export class ConsumerSessions implements ConsumerAccounting {
  private readonly log: Logger
  private readonly sessions = new Map<string, Session>()
  /** By exit: the price it stated itself (see learnPrice), over what its ad says. */
  private readonly statedPrices = new Map<string, bigint>()
  /** Exits that asked more than they advertised: said once each. */
  private readonly overcharging = new Set<string>()
  private readonly self: PeerId
  private readonly now: () => number
  private timer?: NodeJS.Timeout
  /** Error lines for countersigned receipts the ledger could not write. */
  private readonly unrecorded = new NoticeLimiter(UNRECORDED_NOTICES_PER_MINUTE)
  /** Receipts the exits refused. */
  refused = 0
  /**
   * Set while the ledger cannot write the receipts our exits countersign (a
   * full disk): they are lost if the node stops before a write works, and
   * our balance, read from the ledger, leaves out what they spent. Cleared
   * by the next receipt written. `since`: the first failure of the episode.
   */
  storeFailure?: { since: number, error: string }
  /** The one bounded wait for our proof of work, shared by all tunnels. */
  private powWait?: Promise<void>
  /** Our balance for outOfCredit(). */
  private readonly credit: OwnCredit
  private cutOff?: (reason: string) => void

  constructor (private readonly components: ConsumerSessionsComponents, private readonly init: ConsumerSessionsInit) {
    this.log = components.logger.forComponent('spareband:accounting:consumer')
    this.credit = new OwnCredit({
      read: () => this.init.ledger.balance().balanceMicro,
      pending: () => {
        let signedNotHeld = 0n
        for (const s of this.sessions.values()) if (s.chargedMicro > s.countersignedMicro) signedNotHeld += s.chargedMicro - s.countersignedMicro
        return signedNotHeld
      },
      now: () => this.now(),
      maxAgeMs: CREDIT_CHECK_MS
    })
    this.self = peerIdFromPrivateKey(init.privateKey)
    this.now = init.now ?? Date.now
  }

  private get replyTimeout (): number {
    return this.init.replyTimeoutMs ?? REPLY_TIMEOUT
  }

  start (): void {
    // a wait that ended with an earlier start's (a stopped solve) is not this start's
    this.powWait = undefined
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
    const s = this.sessionOf(exit)
    s.openTunnels++
    return s.id
  }

  release (exit: PeerId, sessionId: string): void {
    const s = this.sessions.get(exit.toString())
    if (s?.id === sessionId && s.openTunnels > 0) s.openTunnels--
  }

  meter (exit: PeerId, direction: MeterDirection, bytes: number): void {
    const s = this.sessionOf(exit)
    if (direction === 'up') s.up += bytes
    else s.down += bytes
    s.lastActivity = this.now()
    if (s.up + s.down - s.sentTotal >= (this.init.intervalBytes ?? DEFAULT_RECEIPT_INTERVAL_BYTES)) this.sign(s)
  }

  /**
   * Why this node may open no tunnel now: its own balance is not above
   * stopAtBalanceMicro. Undefined while it is, with no stop set, and while
   * our proof of work (and with it our allowance) is still on its way.
   */
  outOfCredit (): string | undefined {
    const floor = this.init.stopAtBalanceMicro
    if (floor == null || this.init.pow?.() == null) return undefined
    const balance = this.credit.balance()
    if (balance > floor) return undefined
    return `this node is out of credit: its balance is ${formatCredits(balance)}, not above ${formatCredits(floor)} (accounting.stop_at_balance); ${this.init.outOfCreditAdvice ?? 'it earns credit as an exit'}`
  }

  /** How to end our open tunnels once our balance is spent (checked as we sign receipts). */
  setCutOff (cutOff: (reason: string) => void): void {
    this.cutOff = cutOff
  }

  /**
   * A receipt we signed puts the session's cost at `chargedMicro`: taken
   * off our balance as outOfCredit() sees it, at once, not once the exit
   * has answered (bytes keep coming meanwhile, a MiB or more a session at
   * loopback speeds), and our tunnels are ended if that spent it.
   */
  private charge (s: Session, chargedMicro: bigint): void {
    if (chargedMicro <= s.chargedMicro) return
    const delta = chargedMicro - s.chargedMicro
    s.chargedMicro = chargedMicro
    this.credit.charge(delta)
    if (this.cutOff == null) return
    try {
      const reason = this.outOfCredit()
      if (reason != null) this.cutOff(reason)
    } catch (err: any) {
      // a ledger that cannot be read (closed under us at a stop): the exits still judge us by theirs
      this.log.error('could not check our balance - %e', err)
    }
  }

  async prepare (exit: PeerId): Promise<void> {
    const s = this.sessionOf(exit)
    if (s.sentPow) return
    if (this.init.pow?.() == null && this.init.powSolved != null) {
      // one wait for all tunnels, from the first that asks: a proof that takes
      // longer must not hold up every later tunnel by the whole wait again
      if (this.powWait == null) {
        this.log('waiting for our proof of work before tunnelling through %p', exit)
        const solved = typeof this.init.powSolved === 'function' ? this.init.powSolved() : this.init.powSolved
        this.powWait = withTimeout(solved, this.init.powWaitMs ?? POW_WAIT).then(() => {}, () => {})
      }
      await this.powWait
    }
    if (this.init.pow?.() == null) return
    s.helloing ??= this.serialised(s, async () => this.hello(s, await this.open(s))).finally(() => { s.helloing = undefined })
    await s.helloing
  }

  private sessionOf (exit: PeerId): Session {
    const key = exit.toString()
    let s = this.sessions.get(key)
    if (s == null || s.closed) {
      s = {
        id: randomBytes(12).toString('base64url'),
        exit,
        startedAt: BigInt(this.now()),
        price: this.statedPrices.get(key) ?? this.init.priceOf?.(exit) ?? DEFAULT_PRICE_PER_GB_MICRO,
        up: 0,
        down: 0,
        sentTotal: 0,
        seq: 0n,
        updatedAt: 0,
        signedAt: 0,
        lastActivity: this.now(),
        inFlight: 0,
        openTunnels: 0,
        sentPow: false,
        closed: false,
        countersigned: false,
        chargedMicro: 0n,
        countersignedMicro: 0n
      }
      this.sessions.set(key, s)
    }
    return s
  }

  private tick (): void {
    const now = this.now()
    const interval = this.init.intervalMs ?? DEFAULT_RECEIPT_INTERVAL_MS
    for (const s of this.sessions.values()) {
      const outstanding = s.up + s.down - s.sentTotal
      // every interval, not every tick: the tick runs at least once a second
      // so that short intervals and idle sessions are seen in time (a clock
      // that went back signs at once rather than wait for it to catch up)
      if (outstanding > 0 && (now - s.signedAt >= interval || now < s.signedAt)) this.sign(s)
      // a quiet tunnel (ssh, a websocket) keeps its session: bytes it carries
      // later are metered by the exit under the session it was opened with
      if (s.openTunnels > 0) continue
      const idle = now - s.lastActivity
      if (outstanding === 0 && idle > (this.init.sessionIdleMs ?? 30 * second)) void this.close(s)
      else if (outstanding > 0 && idle > (this.init.unsignedGiveUpMs ?? DEFAULT_UNSIGNED_GIVE_UP_MS)) {
        this.log('giving up on a receipt for %d bytes through %p: no answer for %d s', outstanding, s.exit, Math.round(idle / 1000))
        void this.close(s)
      }
    }
  }

  /**
   * The exit's own word on its price (in its answer to our hello, or with a
   * refusal). An exit we found without its capacity ad (through identify, or
   * before the ad came) refused every receipt signed at the default price,
   * and held us after 4 MiB. An exit is never paid more than its ad said,
   * though: one that asks more than it advertised (bait and switch) keeps
   * refusing our receipts, and holds us as any exit we cannot pay does.
   * A session's price is fixed once a receipt of it was countersigned: at
   * another price the exit starts a new session (the exit's price changed).
   */
  private learnPrice (s: Session, price: bigint): void {
    const key = s.exit.toString()
    if (price === s.price) return
    const advertised = this.init.priceOf?.(s.exit)
    if (advertised != null && price > advertised) {
      if (!this.overcharging.has(key)) {
        this.overcharging.add(key)
        this.log.error('exit %p asks %s micro-credits per GB but advertised %s: not paying more than advertised', s.exit, price, advertised)
      }
      return
    }
    this.statedPrices.set(key, price)
    if (!s.countersigned) {
      s.price = price
      // what we signed at the price we had is charged at the one we learnt: the next receipt covers it so
      const rebased = costMicro(BigInt(s.sentTotal), price)
      this.credit.charge(rebased - s.chargedMicro)
      s.chargedMicro = rebased
    } else void this.close(s)
  }

  /** Runs `fn` after the session's previous write. */
  private async serialised (s: Session, fn: () => Promise<void>): Promise<void> {
    const run = (s.sending ?? Promise.resolve()).catch(() => {}).then(fn)
    s.sending = run
    try {
      await run
    } finally {
      if (s.sending === run) s.sending = undefined
    }
  }

  private async open (s: Session): Promise<Channel> {
    s.channel ??= (async () => {
      const stream = await this.components.dialProtocol(s.exit, RECEIPT_PROTOCOL, { runOnLimitedConnection: true, signal: AbortSignal.timeout(10 * second) })
      const channel: Channel = { lp: boundedLpStream(stream, { maxDataLength: MAX_FRAME }), stream, expected: [] }
      void this.readAnswers(s, channel)
      return channel
    })()
    try {
      const channel = await s.channel
      if (channel.broken != null) throw channel.broken
      return channel
    } catch (err) {
      s.channel = undefined
      throw err
    }
  }

  /** Takes the exit's answers in order, for as long as the stream lives. */
  private async readAnswers (s: Session, channel: Channel): Promise<void> {
    try {
      while (true) {
        const frame = await channel.lp.read()
        const next = channel.expected.shift()
        if (next == null) throw new Error('an answer nobody asked for')
        try {
          await this.onAnswer(s, next, ReceiptStreamMessage.decode(frame.subarray()))
          next.resolve()
        } catch (err: any) {
          next.reject(err)
        }
      }
    } catch (err: any) {
      // an exit that broke the framing, or a stream that ended: the next receipt opens a new one
      this.breakChannel(channel, err instanceof Error ? err : new Error(String(err)))
      if (s.channel != null && (await s.channel.catch(() => undefined)) === channel) s.channel = undefined
    }
  }

  private async onAnswer (s: Session, expected: Expected, answer: ReceiptStreamMessage): Promise<void> {
    const signed = expected.receipt
    if (signed == null) {
      if (answer.pricePerGb != null) this.learnPrice(s, answer.pricePerGb)
      // the ack of a hello; an exit that refused it (over its budget, say) does
      // not have our proof, so it is sent again with the next receipt
      if (answer.error != null) throw new Error(`exit refused our hello: ${answer.error}`)
      for (const bytes of answer.latest?.receipts ?? []) this.catchUp(s, bytes)
      return
    }
    if (answer.receipt == null) {
      this.refused++
      if (answer.pricePerGb != null && answer.pricePerGb !== signed.pricePerGb) this.learnPrice(s, answer.pricePerGb)
      throw new Error(`exit refused receipt ${signed.seq}: ${answer.error ?? 'no reason given'}`)
    }
    // throws unless the answer is exactly the receipt we signed plus an exit signature
    const full = countersignedAnswer(answer.receipt, signed)
    s.countersigned = true
    const held = costMicro((signed.bytesUp ?? 0n) + (signed.bytesDown ?? 0n), signed.pricePerGb ?? s.price)
    if (held > s.countersignedMicro) s.countersignedMicro = held
    // written with the next batch, which checks the exit's signature of the
    // receipt it writes: nothing we send waits on it (see Ledger.recordLater)
    this.init.ledger.recordLater(full).then(() => {
      this.storeFailure = undefined
    }, err => {
      if (err instanceof LedgerError && err.code === LedgerErrorCode.IO) this.storeFailure = { since: this.storeFailure?.since ?? this.now(), error: err.message }
      // a failing disk fails every receipt, one a MiB: the log gets a few a minute, with the count left out
      const heldBack = this.unrecorded.take()
      if (heldBack != null) this.log.error('countersigned receipt %d of %p not recorded%s - %e', full.seq, s.exit, heldBack > 0 ? ` (nor ${heldBack} more since the last such line)` : '', err)
      // a bad signature: the next receipt covers these bytes again, even if no more traffic comes
      if (err instanceof ReceiptError) expected.uncovered?.()
    })
  }

  /**
   * Records a receipt of another session of ours the exit gave back with
   * its ack of a hello (see ExitSessions.latestFor): one whose answer never
   * reached us, when this node was killed with it on the way. Only ours with
   * this exit, and the batch checks both signatures, as for any answer; one
   * we hold already, or hold a newer one of, changes nothing.
   */
  private catchUp (s: Session, bytes: Uint8Array): void {
    let r: CountersignedReceipt
    try {
      r = decodeReceipt(bytes) as CountersignedReceipt
      if (r.exitSig == null || r.consumer == null || r.exit == null) return
      if (!ed25519PeerFromBytes(r.consumer, 'consumer').equals(this.self) || !ed25519PeerFromBytes(r.exit, 'exit').equals(s.exit)) return
    } catch {
      return
    }
    this.init.ledger.recordLater(r).then(outcome => {
      if (outcome !== 'duplicate') this.log('recorded receipt %s of session %s with %p, given back by the exit', r.seq, r.sessionId, s.exit)
    }, () => {})
  }

  /**
   * Writes a frame; resolves once written, with (boxed, so await does not
   * flatten it) the promise of its answer. An answer not in by `timeoutMs`
   * resets the stream: answers come in order, so nothing after it would be
   * answered either, and what waits on a silent exit must not pile up.
   */
  private async request (channel: Channel, msg: ReceiptStreamMessage, timeoutMs: number, receipt?: SignedReceipt, uncovered?: () => void): Promise<{ answered: Promise<void> }> {
    let timer: NodeJS.Timeout | undefined
    const answered = new Promise<void>((resolve, reject) => {
      channel.expected.push({ receipt, resolve, reject, uncovered })
      timer = setTimeout(() => { this.breakChannel(channel, new Error(`no answer in ${timeoutMs} ms`)) }, timeoutMs)
      timer.unref()
    })
    answered.then(() => clearTimeout(timer), () => clearTimeout(timer))
    await channel.lp.write(ReceiptStreamMessage.encode(msg))
    return { answered }
  }

  /** Fails what waits for an answer on the channel and resets its stream (readAnswers then lets go of it). */
  private breakChannel (channel: Channel, err: Error): void {
    channel.broken ??= err
    for (const e of channel.expected.splice(0)) e.reject(channel.broken)
    if (channel.stream.status === 'open') channel.stream.abort(channel.broken)
  }

  /** Sends our proof of work once per session and waits for the exit's ack. */
  private async hello (s: Session, channel: Channel): Promise<void> {
    const pow = this.init.pow?.()
    if (s.sentPow || pow == null) return
    const { answered } = await this.request(channel, { powNonce: encodePowNonce(pow.nonce), powDifficulty: pow.difficulty }, Math.min(HELLO_TIMEOUT, this.replyTimeout))
    await answered
    s.sentPow = true
  }

  /** Signs the session's totals now, unless a full window of receipts is unanswered. */
  private sign (s: Session): void {
    // a write under way or a full window: the next meter() or tick catches up
    // (checked here, synchronously, because meter() calls this for every chunk)
    if (s.sending != null || s.inFlight >= MAX_IN_FLIGHT) return
    void this.serialised(s, async () => {
      const sent = await this.signNow(s)
      sent?.answered.catch(err => this.log('receipt for %p not countersigned - %e', s.exit, err))
    }).catch(err => this.log('receipt for %p not sent - %e', s.exit, err))
  }

  /** Sends a receipt; resolves once it is written, with the promise of its answer. */
  private async signNow (s: Session): Promise<{ answered: Promise<void> } | undefined> {
    const total = s.up + s.down
    if (total <= s.sentTotal && s.seq > 0n) return undefined
    const channel = await this.open(s)
    if (s.inFlight >= MAX_IN_FLIGHT) return undefined
    await this.hello(s, channel)
    s.seq += 1n
    const signed = await signAsConsumer({
      sessionId: s.id,
      consumer: this.self.toMultihash().bytes,
      exit: s.exit.toMultihash().bytes,
      bytesUp: BigInt(s.up),
      bytesDown: BigInt(s.down),
      seq: s.seq,
      startedAt: s.startedAt,
      // never behind the last receipt: a wall clock stepped back (NTP) would
      // otherwise make every further receipt of the session a regression
      updatedAt: BigInt(Math.max(Number(s.startedAt), s.updatedAt, this.now())),
      pricePerGb: s.price
    }, this.init.privateKey)
    s.updatedAt = Number(signed.updatedAt)
    s.signedAt = this.now()
    const before = s.sentTotal
    s.sentTotal = total
    this.charge(s, costMicro(BigInt(total), s.price))
    // an unanswered (or falsely countersigned) receipt is covered again by the next, cumulative one, unless a newer one went out;
    // that one goes at the next tick, not an interval later: an exit holding us for these bytes waits for it
    const uncovered = (): void => {
      if (s.sentTotal !== total) return
      s.sentTotal = before
      s.signedAt = 0
    }
    try {
      s.inFlight++
      const { answered } = await this.request(channel, { receipt: Uint8Array.from(encodeReceipt(signed)) }, this.replyTimeout, signed, uncovered).catch(err => { s.inFlight--; throw err })
      answered.then(() => { s.inFlight-- }, () => { s.inFlight-- })
      const checked = answered.catch(err => { uncovered(); throw err })
      checked.catch(() => {})
      return { answered: checked }
    } catch (err) {
      s.sentTotal = before
      s.signedAt = 0
      throw err
    }
  }

  private async close (s: Session): Promise<void> {
    if (s.closed) return
    s.closed = true
    if (s.up + s.down > s.sentTotal) {
      await this.serialised(s, async () => { await (await this.signNow(s))?.answered }).catch(err => this.log('final receipt for %p not delivered - %e', s.exit, err))
    }
    await s.sending?.catch(() => {})
    const channel = await s.channel?.catch(() => undefined)
    if (channel != null) {
      // let the answers in flight arrive before the exit sees us leave
      const deadline = this.now() + 2 * second
      while (channel.expected.length > 0 && channel.broken == null && this.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
      await channel.stream.close({ signal: AbortSignal.timeout(2 * second) }).catch(() => channel.stream.abort(new Error('close timed out')))
    }
    if (this.sessions.get(s.exit.toString()) === s) this.sessions.delete(s.exit.toString())
  }
}

async function withTimeout<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms) })])
  } finally {
    clearTimeout(timer)
  }
}
