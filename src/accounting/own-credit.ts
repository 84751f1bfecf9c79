/**
 * This node's balance as a consumer, for stopping at it (see
 * ConsumerSessions.outOfCredit): a reading of the ledger, taken at most
 * every `maxAgeMs` (a read commits the ledger's deferred writes, so not
 * one per receipt), less what we signed for since that the ledger does
 * not have yet.
 *
 * The ledger holds a receipt once the exit has countersigned it and it was
 * written; until then its cost is only ours to count. So a reading starts
 * from what is signed and not yet countersigned (`pending`: receipts on
 * their way, several a session at speed), and every receipt signed after
 * it adds its cost (`charge`), so none is missed between readings nor
 * counted twice across them.
 */

export interface OwnCreditInit {
  /** The ledger's balance for us (micro-credits). */
  read: () => bigint
  /** What we signed for that the ledger does not hold yet (micro-credits). */
  pending: () => bigint
  now: () => number
  /** @default 1000 */
  maxAgeMs?: number
}

export class OwnCredit {
  private reading?: { at: number, balanceMicro: bigint }
  private chargedSince = 0n

  constructor (private readonly init: OwnCreditInit) {}

  /** Our balance now (micro-credits). */
  balance (): bigint {
    const t = this.init.now()
    const r = this.reading
    // a clock stepped back counts as an old reading: one kept until the clock catches up could stop us for good
    if (r == null || t - r.at >= (this.init.maxAgeMs ?? 1000) || t < r.at) {
      this.reading = { at: t, balanceMicro: this.init.read() }
      this.chargedSince = this.init.pending()
    }
    return this.reading!.balanceMicro - this.chargedSince
  }

  /** We signed for `deltaMicro` more (less, when a session's price was corrected down). */
  charge (deltaMicro: bigint): void {
    // before the first reading there is nothing to take it off: that reading's pending() counts it
    if (this.reading != null) this.chargedSince += deltaMicro
  }
}
