/**
 * Countersigned receipts on the gossip topic `spareband/receipts/1`. Every
 * node checks a receipt before it is accepted or forwarded: a forged or
 * malformed one is rejected (which lowers the sender's gossipsub score: see
 * src/node/gossip-scoring.ts), one we already hold or that is older than
 * what we hold is ignored, and a valid new one goes into the ledger as
 * `gossip`.
 */

import { TopicValidatorResult } from '@libp2p/gossipsub'
import { ReceiptError, ReceiptErrorCode } from './errors.ts'
import { decodeReceipt, encodeReceipt, verifyReceipt } from './receipts.ts'
import { MAX_CLOCK_AHEAD_MS } from './constants.ts'
import type { Ledger } from './ledger.ts'
import type { CountersignedReceipt } from './receipts.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { ComponentLogger, Logger } from '@libp2p/interface'

/**
 * Receipt errors that are not the forwarder's fault: stale or repeated
 * receipts, and a conflict (two versions of one receipt, both validly
 * signed: honest peers forward whichever reached them first).
 */
const HARMLESS = new Set<string>([ReceiptErrorCode.REGRESSED, ReceiptErrorCode.REPLAY, ReceiptErrorCode.CONFLICT])

export interface ReceiptGossipInit {
  pubsub: GossipSub
  topic: string
  ledger: Ledger
  logger: ComponentLogger
  /** @default Date.now */
  now?: () => number
}

export class ReceiptGossip {
  private readonly log: Logger
  stats = { accepted: 0, ignored: 0, rejected: 0, published: 0 }

  constructor (private readonly init: ReceiptGossipInit) {
    this.log = init.logger.forComponent('spareband:accounting:gossip')
  }

  start (): void {
    const { pubsub, topic } = this.init
    pubsub.topicValidators.set(topic, async (_peer, message) => this.validate(message.data))
    pubsub.subscribe(topic)
  }

  stop (): void {
    this.init.pubsub.topicValidators.delete(this.init.topic)
    try { this.init.pubsub.unsubscribe(this.init.topic) } catch {}
  }

  /** How many peers we know follow the topic: our published receipts go to each of them (flood publishing). */
  subscribers (): number {
    return this.init.pubsub.getSubscribers(this.init.topic).length
  }

  async publish (r: CountersignedReceipt): Promise<void> {
    await this.init.pubsub.publish(this.init.topic, encodeReceipt(r))
    this.stats.published++
  }

  /** The topic validator. A validator that throws counts as Ignore, so every failure is answered explicitly. */
  async validate (data: Uint8Array): Promise<TopicValidatorResult> {
    try {
      const r = decodeReceipt(data)
      const ahead = Number(r.updatedAt ?? 0n) - (this.init.now ?? Date.now)()
      if (ahead > MAX_CLOCK_AHEAD_MS) {
        // a signer's clock, or a made-up date: not taken, but the forwarder's clock may simply be ahead of ours
        this.log('ignored a gossiped receipt dated %d ms ahead of our clock', ahead)
        this.stats.ignored++
        return TopicValidatorResult.Ignore
      }
      await verifyReceipt(r)
      const result = await this.init.ledger.recordReceipt(r, 'gossip')
      if (result === 'duplicate') {
        this.stats.ignored++
        return TopicValidatorResult.Ignore
      }
      this.stats.accepted++
      return TopicValidatorResult.Accept
    } catch (err: any) {
      if (!(err instanceof ReceiptError)) {
        // our own trouble (the ledger closed or busy), not the sender's: no penalty
        this.log.error('could not check a gossiped receipt - %e', err)
        this.stats.ignored++
        return TopicValidatorResult.Ignore
      }
      if (HARMLESS.has(err.code)) {
        this.stats.ignored++
        return TopicValidatorResult.Ignore
      }
      this.stats.rejected++
      this.log('rejected a gossiped receipt: %s', err.message)
      return TopicValidatorResult.Reject
    }
  }
}
