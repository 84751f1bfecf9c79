/**
 * gossipsub peer scoring for the receipt and reputation topics.
 *
 * gossipsub only scores the topics listed in its score parameters, and its
 * default lists none: a receipt our validator rejected was dropped, but the
 * peer that sent it lost nothing and could go on sending. Here the receipt
 * topic is scored for one thing above all, invalid messages (P4): every
 * rejected receipt counts, squared, against its sender, so a peer that sends
 * a few forged receipts falls below gossipsub's thresholds (no gossip to it,
 * then its messages are ignored: graylisted) and stays there for minutes.
 *
 * What is left out on purpose: the mesh delivery quota (P3, P3b). Receipts
 * are sparse (one at the end of a session, one a minute on long ones), so a
 * quota of deliveries per window would count honest, quiet peers as failing
 * and prune them.
 *
 * Reputation reports (one per exit used, every ten minutes at most) are
 * scored the same way: a forged report costs its sender as a forged
 * receipt does.
 */

import type { PeerScoreParams, TopicScoreParams } from '@libp2p/gossipsub/score'

/**
 * P4's weight: the score of a peer with n rejected receipts is -10 n², so
 * 2 take it below gossipsub's default gossip threshold (-10), 3 below its
 * graylist threshold (-80).
 */
export const INVALID_RECEIPT_WEIGHT = -10

/** Per decay interval (1 s): a rejected receipt counts half after about 11.5 minutes. */
const INVALID_RECEIPT_DECAY = 0.999

export function receiptTopicScoreParams (): Partial<TopicScoreParams> {
  return {
    topicWeight: 1,
    // P1: a little for staying in the mesh, at most +1 after an hour
    timeInMeshWeight: 1 / 3600,
    timeInMeshQuantum: 1000,
    timeInMeshCap: 3600,
    // P2: a little for being first with a valid receipt, at most +5 (with
    // P1's +1, little enough that three rejections still graylist: -90 + 6 < -80)
    firstMessageDeliveriesWeight: 1,
    firstMessageDeliveriesDecay: 0.9,
    firstMessageDeliveriesCap: 5,
    // P3, P3b: off (see above)
    meshMessageDeliveriesWeight: 0,
    meshFailurePenaltyWeight: 0,
    // P4: rejected receipts
    invalidMessageDeliveriesWeight: INVALID_RECEIPT_WEIGHT,
    invalidMessageDeliveriesDecay: INVALID_RECEIPT_DECAY
  }
}

/** gossipsub's score parameters for a node on `topics` (receipts, reputation); `local` drops the same-IP penalty (a testnet on one host). */
export function gossipScoreParams (topics: string[], local: boolean): Partial<PeerScoreParams> {
  return {
    topics: Object.fromEntries(topics.map(t => [t, receiptTopicScoreParams() as TopicScoreParams])),
    ...(local ? { IPColocationFactorWeight: 0 } : {})
  }
}
