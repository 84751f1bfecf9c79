/**
 * The exit's tunnel count as `max_tunnels` and `max_tunnels_per_consumer`
 * bound it: a tunnel holds a slot from the moment it is admitted (before
 * DNS and the target connect) until it ends or its set-up fails. Counting
 * only open tunnels let a burst whose set-ups were all under way at once
 * through whole. Per consumer the count is kept in a map, so admission
 * costs the same with ten tunnels open as with ten thousand.
 */

/** Gives a slot back; any call after the first does nothing. */
export type ReleaseSlot = () => void

export class TunnelSlots {
  private count = 0
  private readonly byConsumer = new Map<string, number>()

  /** Slots held, all consumers together. */
  get size (): number { return this.count }

  /** Slots held by one consumer. */
  of (consumer: string): number {
    return this.byConsumer.get(consumer) ?? 0
  }

  /** Takes a slot for `consumer` (the caller has checked the limits); the release gives it back, once. */
  take (consumer: string): ReleaseSlot {
    this.count++
    this.byConsumer.set(consumer, this.of(consumer) + 1)
    let held = true
    return () => {
      if (!held) return
      held = false
      this.count--
      const left = this.of(consumer) - 1
      if (left > 0) this.byConsumer.set(consumer, left)
      else this.byConsumer.delete(consumer)
    }
  }
}
