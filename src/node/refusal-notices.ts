/**
 * What this node refused peers, for the operator's log: tunnels its exit
 * refused, receipts it refused, gossip its validators rejected. These were
 * in the debug log and status counters only, so an attack (18,732 bad
 * tunnel requests, forged receipts, junk gossip) left no line in the
 * node's log. Rate-limited per kind, as the proxies' refusals are: the
 * count of those held back goes with the next one shown.
 */

import { NoticeLimiter, noticeText } from '../notice-limiter.ts'

export interface PeerRefusalNotice {
  /**
   * 'tunnel': the exit refused a tunnel; 'receipt': it refused a receipt;
   * 'gossip': a gossiped message was rejected; 'framing': a connection or
   * stream was ended for a length prefix longer than any frame needs.
   */
  kind: 'tunnel' | 'receipt' | 'gossip' | 'framing'
  /** The peer that asked (tunnel, receipt) or forwarded the message (gossip); for framing, the peer's address (its id is not known yet). */
  peer: string
  /** The status the consumer was answered (tunnel), the topic (gossip), or what was ended (framing: a connection, or a stream and its protocol). */
  about?: string
  reason: string
  /** Notices of this kind held back since the last one shown, over the rate limit. */
  suppressed: number
}

/** Notices shown per kind and minute. */
export const REFUSAL_NOTICES_PER_MINUTE = 10

export class RefusalNotices {
  private readonly limiters: Record<PeerRefusalNotice['kind'], NoticeLimiter>

  constructor (private readonly emit: (notice: PeerRefusalNotice) => void, perMinute = REFUSAL_NOTICES_PER_MINUTE) {
    this.limiters = { tunnel: new NoticeLimiter(perMinute), receipt: new NoticeLimiter(perMinute), gossip: new NoticeLimiter(perMinute), framing: new NoticeLimiter(perMinute) }
  }

  note (kind: PeerRefusalNotice['kind'], peer: string, reason: string, about?: string): void {
    const suppressed = this.limiters[kind].take()
    if (suppressed == null) return
    // reasons quote what the peer sent (a target host, a session id)
    this.emit({ kind, peer, about, reason: noticeText(reason), suppressed })
  }
}
