/**
 * Inbound tunnel streams whose request has not come yet. A consumer may open
 * streams ahead of need (warm streams, src/relay/warm-streams.ts) and the
 * exit waits up to a minute for their request; such a stream counts against
 * no tunnel limit, since it is no tunnel yet. Without a bound of their own,
 * a peer that opened streams and wrote nothing held about 12 KiB of the
 * exit's memory per stream (a thousand per connection, from as many
 * identities as it liked) for that minute, again and again.
 *
 * So a consumer may have at most as many waiting streams as it may have
 * tunnels, and all consumers together as many as the exit takes tunnels
 * (but never fewer than MIN_WAITING_PER_CONSUMER and MIN_WAITING: a burst
 * of set-ups is waiting too, for the moment its request takes to come).
 * Past either, the oldest waiting stream of that consumer, or of the
 * consumer with the most waiting, is let go: answered as a request over
 * the limit would be (the `refuse` callback: RATE_LIMITED past the
 * consumer's share, BUSY past the total) and closed, or reset without one
 * (no callback, or as many being answered already as may wait in all: a
 * stream let go buffers what its peer sends until it closes, so the
 * answered ones are bounded too).
 * A scraper's burst of a thousand set-ups at one exit is over its share
 * before the exit has read the requests that are on their way: reset, they
 * reached its clients as 503s naming a closed stream, where an answer
 * tells its node to wait and ask again. An honest consumer loses at most a
 * warm stream, which it replaces, or a set-up, which it asks for again.
 * At the default limits all waiting streams together hold about 12 MiB at
 * most.
 */

import type { Stream } from '@libp2p/interface'

export const MIN_WAITING_PER_CONSUMER = 64
export const MIN_WAITING = 1024

/** Which limit a stream let go was over: its consumer's share, or the total. */
export type WaitingLimit = 'consumer' | 'total'

export class WaitingStreams {
  /** Every waiting stream with its consumer, oldest first (a Map keeps insertion order). */
  private readonly all = new Map<Stream, string>()
  private readonly byConsumer = new Map<string, Set<Stream>>()
  private readonly evicted = new WeakSet<Stream>()
  /** Streams let go for being over a limit, since the exit was made. */
  evictions = 0
  /** Streams let go and still being answered (refuse's promise not settled). */
  private answering = 0

  private readonly limits: { perConsumer: number, total: number }

  /**
   * `limits`: the exit's tunnel limits (per consumer, in all), raised to the
   * minimums above. `refuse`: answers and closes a stream let go, settling
   * once it is closed (it no longer counts as waiting from the start);
   * without it the stream is reset.
   */
  constructor (limits: { perConsumer: number, total: number }, private readonly refuse?: (stream: Stream, over: WaitingLimit) => Promise<void>) {
    this.limits = { perConsumer: Math.max(limits.perConsumer, MIN_WAITING_PER_CONSUMER), total: Math.max(limits.total, MIN_WAITING) }
  }

  get size (): number {
    return this.all.size
  }

  /** Adds a stream; resets the oldest waiting ones that the new one puts over a limit. */
  add (stream: Stream, consumer: string): void {
    let own = this.byConsumer.get(consumer)
    if (own == null) {
      own = new Set()
      this.byConsumer.set(consumer, own)
    }
    own.add(stream)
    this.all.set(stream, consumer)
    while (own.size > this.limits.perConsumer) this.evict(own.values().next().value!, 'consumer')
    while (this.all.size > this.limits.total) this.evict(this.oldestOfLargest(), 'total')
  }

  /**
   * Over the total, the oldest stream of the consumer with the most waiting:
   * identities cost nothing, and a few flooding ones that evicted the oldest
   * of anyone's took every honest consumer's warm streams and set-ups with them.
   */
  private oldestOfLargest (): Stream {
    let largest: Set<Stream> | undefined
    for (const own of this.byConsumer.values()) if (largest == null || own.size > largest.size) largest = own
    return largest!.values().next().value!
  }

  /** The stream's request came (or it ended): it waits no more. */
  delete (stream: Stream): void {
    const consumer = this.all.get(stream)
    if (consumer == null) return
    this.all.delete(stream)
    const own = this.byConsumer.get(consumer)
    own?.delete(stream)
    if (own?.size === 0) this.byConsumer.delete(consumer)
  }

  /** Whether the stream was let go here for being over a limit (its read then fails, or its request is not served). */
  wasEvicted (stream: Stream): boolean {
    return this.evicted.has(stream)
  }

  /** Every waiting stream, oldest first, for stop() to close. */
  streams (): Stream[] {
    return [...this.all.keys()]
  }

  clear (): void {
    this.all.clear()
    this.byConsumer.clear()
  }

  private evict (stream: Stream, over: WaitingLimit): void {
    this.delete(stream)
    this.evicted.add(stream)
    this.evictions++
    if (this.refuse == null || this.answering >= this.limits.total) {
      stream.abort(new Error('too many tunnel streams waiting for a request'))
      return
    }
    this.answering++
    void this.refuse(stream, over).catch(() => {}).finally(() => { this.answering-- })
  }
}
