/**
 * Reputation reports on the gossip topic `spareband/reputation/1`: every
 * `intervalMs` this node signs a report on each exit it used since its last
 * one (ReputationObserver) and publishes it; every report that reaches it
 * is checked before it is accepted or forwarded (a gossipsub topic
 * validator), and what counts goes into the ReputationBook.
 *
 * Forged or malformed reports are rejected, which lowers the sender's
 * gossipsub score. Valid ones this node will not hold are ignored, not
 * forwarded and not held against the sender: copies and older reports,
 * one too soon after the reporter's last, one out of the window, and one
 * from a reporter that paid the exit nothing this node knows of (its
 * receipts may simply not have reached us yet; the next report, minutes
 * later, is checked again).
 */

import { TopicValidatorResult } from '@libp2p/gossipsub'
import { ReputationError } from './errors.ts'
import { MAX_REPORT_COUNT, decodeReport, encodeReport, signReport, verifyReport } from './reputation.ts'
import { ReputationObserver } from './reputation-observer.ts'
import { MIN_REPUTATION_REPORT_GAP_MS } from './constants.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import type { ReputationBook } from './reputation-book.ts'
import type { SignedReport } from './reputation.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { ComponentLogger, Logger, PeerId, PrivateKey } from '@libp2p/interface'

export interface ReputationGossipInit {
  pubsub: GossipSub
  topic: string
  book: ReputationBook
  privateKey: PrivateKey
  logger: ComponentLogger
  /** How often this node reports on the exits it used; 0: never (it still reads others' reports). */
  intervalMs: number
  /** @default Date.now */
  now?: () => number
  /** Told of each message rejected (forged, malformed), with the peer it came from: the operator's notices. */
  onReject?: (from: PeerId, reason: string) => void
}

export class ReputationGossip {
  readonly observer = new ReputationObserver()
  stats = { accepted: 0, ignored: 0, rejected: 0, published: 0 }
  private readonly log: Logger
  private readonly now: () => number
  private readonly self: Uint8Array
  private timer?: NodeJS.Timeout

  constructor (private readonly init: ReputationGossipInit) {
    this.log = init.logger.forComponent('spareband:accounting:reputation')
    this.now = init.now ?? Date.now
    this.self = init.privateKey.publicKey.toMultihash().bytes
  }

  start (): void {
    const { pubsub, topic } = this.init
    pubsub.topicValidators.set(topic, async (peer, message) => this.validate(message.data, peer))
    pubsub.subscribe(topic)
    if (this.init.intervalMs > 0) {
      this.timer = setInterval(() => { void this.publishDue() }, this.init.intervalMs)
      this.timer.unref()
    }
  }

  stop (): void {
    clearInterval(this.timer)
    this.init.pubsub.topicValidators.delete(this.init.topic)
    try { this.init.pubsub.unsubscribe(this.init.topic) } catch {}
  }

  /** A tunnel attempt through `exit` (a peer id string) and how it went. */
  observe (exit: string, ok: boolean, status?: string): void {
    this.observer.observe(exit, ok, status, this.now())
  }

  /** Signs and publishes a report on each exit used since its last one; returns how many went out. */
  async publishDue (): Promise<number> {
    const now = this.now()
    let sent = 0
    // the timer paces reports; the gap only keeps an early call (or a short interval) from sending what others would take as too soon
    for (const seen of this.observer.due(now, MIN_REPUTATION_REPORT_GAP_MS)) {
      try {
        // a day of a busy scraper can pass what a report may count: the ratio is what matters
        const scale = Math.min(1, MAX_REPORT_COUNT / Math.max(seen.successes, seen.failures))
        const report = await signReport({
          reporter: this.self,
          subject: peerIdFromString(seen.exit).toMultihash().bytes,
          issuedAt: BigInt(now),
          windowSeconds: seen.windowSeconds,
          successes: Math.floor(seen.successes * scale),
          failures: Math.floor(seen.failures * scale)
        }, this.init.privateKey)
        await this.init.pubsub.publish(this.init.topic, encodeReport(report))
        this.stats.published++
        sent++
      } catch (err: any) {
        // no peer on the topic yet, or an exit id that is not Ed25519: the next round reports again
        this.log('could not publish a reputation report on %s - %s', seen.exit, err.message)
      }
    }
    return sent
  }

  /** The topic validator. A validator that throws counts as Ignore, so every failure is answered explicitly. */
  async validate (data: Uint8Array, from?: PeerId): Promise<TopicValidatorResult> {
    let report: SignedReport
    try {
      report = decodeReport(data) as SignedReport
      await verifyReport(report)
    } catch (err: any) {
      if (!(err instanceof ReputationError)) {
        this.log.error('could not check a reputation report - %e', err)
        this.stats.ignored++
        return TopicValidatorResult.Ignore
      }
      this.stats.rejected++
      this.log('rejected a reputation report: %s', err.message)
      if (from != null) this.init.onReject?.(from, err.message)
      return TopicValidatorResult.Reject
    }
    let outcome
    try {
      outcome = this.init.book.consider(report)
    } catch (err: any) {
      // our own trouble (the ledger closed), not the sender's: no penalty
      this.log.error('could not weigh a reputation report - %e', err)
      this.stats.ignored++
      return TopicValidatorResult.Ignore
    }
    if (outcome === 'new') {
      this.stats.accepted++
      return TopicValidatorResult.Accept
    }
    this.log.trace('ignored a reputation report: %s', outcome)
    this.stats.ignored++
    return TopicValidatorResult.Ignore
  }
}
