/**
 * Countersigned receipts on the gossip topic `spareband/receipts/1`. Every
 * node checks a receipt before it is accepted or forwarded: a forged or
 * malformed one is rejected (which lowers the sender's gossipsub score: see
 * src/node/gossip-scoring.ts), one we already hold, that is older than
 * what we hold, or of a session we may have pruned is ignored, and a valid
 * new one goes into the ledger as `gossip`.
 *
 * A message is the receipt's canonical encoding, optionally followed by the
 * consumer's proof of work (ReceiptGossipExtension, fields 16 and 17). A
 * ledger credits an exit only what the consumer's balance can pay, and a
 * node that never spoke to the consumer learns of its allowance this way.
 * A protobuf decoder reading a message as a Receipt skips the extra
 * fields; but spareband before this extension required the canonical
 * encoding on the topic, and rejects messages that carry a proof.
 */

import { TopicValidatorResult } from '@libp2p/gossipsub'
import { concat as uint8ArrayConcat } from 'uint8arrays/concat'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import { ReceiptError, ReceiptErrorCode } from './errors.ts'
import { decodeReceipt, encodeReceipt, verifyReceipt } from './receipts.ts'
import { decodePowNonce, encodePowNonce, verifyPow } from './credits.ts'
import { MAX_CLOCK_AHEAD_MS, MAX_RECEIPT_BYTES } from './constants.ts'
import { ReceiptGossipExtension } from './pb/receipt.ts'
import type { Ledger, ProofOfWork } from './ledger.ts'
import type { Receipt } from './receipts.ts'
import type { CountersignedReceipt } from './receipts.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { ComponentLogger, Logger, PeerId } from '@libp2p/interface'

/**
 * Receipt errors that are not the forwarder's fault: stale or repeated
 * receipts, a conflict (two versions of one receipt, both validly
 * signed: honest peers forward whichever reached them first), and a
 * session this node has pruned (nodes keep third parties' sessions for as
 * long as each is configured to). Ignored, so not forwarded either: valid
 * old receipts, replayed, would otherwise go round the whole network again.
 */
const HARMLESS = new Set<string>([ReceiptErrorCode.REGRESSED, ReceiptErrorCode.REPLAY, ReceiptErrorCode.CONFLICT, ReceiptErrorCode.EXPIRED])

/** The extension's size at most: two tags, an 8-byte nonce with its length, a difficulty. */
const MAX_EXTENSION_BYTES = 16

/** A gossip message: the receipt, then the consumer's proof of work when there is one. */
export function encodeGossipMessage (r: CountersignedReceipt, consumerPow?: ProofOfWork): Uint8Array {
  const receipt = encodeReceipt(r)
  if (consumerPow == null) return receipt
  return uint8ArrayConcat([receipt, ReceiptGossipExtension.encode({ consumerPowNonce: encodePowNonce(consumerPow.nonce), consumerPowDifficulty: consumerPow.difficulty })])
}

/**
 * The inverse of encodeGossipMessage. Throws ReceiptError MALFORMED unless
 * the message is exactly a canonical receipt, or one followed by a
 * canonical extension with both fields. The proof itself is not checked.
 */
export function decodeGossipMessage (data: Uint8Array): { receipt: Receipt, consumerPow?: ProofOfWork } {
  if (data.byteLength > MAX_RECEIPT_BYTES + MAX_EXTENSION_BYTES) {
    throw new ReceiptError({ code: ReceiptErrorCode.TOO_LARGE, size: data.byteLength, max: MAX_RECEIPT_BYTES + MAX_EXTENSION_BYTES })
  }
  let extension: ReceiptGossipExtension
  try {
    // skips the receipt's fields 1-11
    extension = ReceiptGossipExtension.decode(data)
  } catch (err: any) {
    throw new ReceiptError({ code: ReceiptErrorCode.MALFORMED, reason: `undecodable: ${err.message}` })
  }
  if (extension.consumerPowNonce == null && extension.consumerPowDifficulty == null) return { receipt: decodeReceipt(data) }
  const nonce = extension.consumerPowNonce == null ? undefined : decodePowNonce(extension.consumerPowNonce)
  if (nonce == null || extension.consumerPowDifficulty == null) {
    throw new ReceiptError({ code: ReceiptErrorCode.MALFORMED, reason: 'a proof of work needs an 8-byte nonce and a difficulty' })
  }
  // the extension must be the message's tail, byte for byte; decodeReceipt checks the rest is a canonical receipt
  const tail = ReceiptGossipExtension.encode(extension)
  const at = data.byteLength - tail.byteLength
  if (at < 0 || !uint8ArrayEquals(tail, data.subarray(at))) {
    throw new ReceiptError({ code: ReceiptErrorCode.MALFORMED, reason: 'a proof of work must follow the receipt' })
  }
  return { receipt: decodeReceipt(data.subarray(0, at)), consumerPow: { nonce, difficulty: extension.consumerPowDifficulty } }
}

export interface ReceiptGossipInit {
  pubsub: GossipSub
  topic: string
  ledger: Ledger
  logger: ComponentLogger
  /** @default Date.now */
  now?: () => number
  /** Told of each message rejected (forged, malformed), with the peer it came from: the operator's notices. */
  onReject?: (from: PeerId, reason: string) => void
}

export class ReceiptGossip {
  private readonly log: Logger
  /** ignoredNoProof: of those ignored, receipts of consumers that showed no proof of work and earned nothing (see canPay) */
  stats = { accepted: 0, ignored: 0, ignoredNoProof: 0, rejected: 0, published: 0 }

  constructor (private readonly init: ReceiptGossipInit) {
    this.log = init.logger.forComponent('spareband:accounting:gossip')
  }

  start (): void {
    const { pubsub, topic } = this.init
    pubsub.topicValidators.set(topic, async (peer, message) => this.validate(message.data, peer))
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
    // the consumer's proof goes along: a node that never met the consumer cannot credit the exit without it
    await this.init.pubsub.publish(this.init.topic, encodeGossipMessage(r, this.init.ledger.pow(r.consumer)))
    this.stats.published++
  }

  /**
   * Whether the consumer can pay as far as this node knows: it showed a
   * proof of work that meets this node's difficulty (in this message or
   * before), or it earned here as an exit. Otherwise it is a throw-away
   * key: a pair of them signs receipts for free, and every node kept rows
   * for each for good (a hostile-peer review had 1,000 stored on every node
   * in 2 s). An exit carries a consumer that has neither only if its
   * operator lowered accounting.credit_limit below 0; an honest exit's
   * message carries the proof its consumer showed it. One that earned pays
   * with that, and its spending must reach the others, or it could spend
   * the same credit at every exit. With a difficulty of 0 keys are free
   * anyway.
   */
  private canPay (consumer: Uint8Array): boolean {
    const difficulty = this.init.ledger.powDifficulty
    if (difficulty <= 0 || (this.init.ledger.pow(consumer)?.difficulty ?? -1) >= difficulty) return true
    return this.init.ledger.balance(consumer).earnedMicro > 0n
  }

  /** The topic validator. A validator that throws counts as Ignore, so every failure is answered explicitly. */
  async validate (data: Uint8Array, from?: PeerId): Promise<TopicValidatorResult> {
    try {
      const { receipt: r, consumerPow } = decodeGossipMessage(data)
      const ahead = Number(r.updatedAt ?? 0n) - (this.init.now ?? Date.now)()
      if (ahead > MAX_CLOCK_AHEAD_MS) {
        // a signer's clock, or a made-up date: not taken, but the forwarder's clock may simply be ahead of ours
        this.log('ignored a gossiped receipt dated %d ms ahead of our clock', ahead)
        this.stats.ignored++
        return TopicValidatorResult.Ignore
      }
      await verifyReceipt(r)
      if (consumerPow != null) {
        // anyone can check it, so a bad one is the sender's doing
        if (!verifyPow(r.consumer!, consumerPow.nonce, consumerPow.difficulty)) {
          throw new ReceiptError({ code: ReceiptErrorCode.MALFORMED, reason: `the consumer's proof of work (${consumerPow.difficulty} bits) does not verify` })
        }
        // before the receipt: the allowance counts towards what the consumer can pay. A
        // proof too weak for an allowance here is not kept: it would be a row per throw-away key
        if (consumerPow.difficulty >= this.init.ledger.powDifficulty) this.init.ledger.recordPow(r.consumer!, consumerPow.nonce, consumerPow.difficulty)
      }
      if (!this.canPay(r.consumer!)) {
        this.log('ignored a gossiped receipt of a consumer that showed no proof of work and earned nothing')
        this.stats.ignored++
        this.stats.ignoredNoProof++
        return TopicValidatorResult.Ignore
      }
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
      if (from != null) this.init.onReject?.(from, err.message)
      return TopicValidatorResult.Reject
    }
  }
}
