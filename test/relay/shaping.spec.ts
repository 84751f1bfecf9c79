import { describe, it, expect } from 'vitest'
import { TokenBucket, consumeAll, mbpsToBytesPerSecond } from '../../src/relay/shaping.ts'

describe('token bucket', () => {
  it('lets the burst through, then asks to wait exactly as long as the rate needs', () => {
    let now = 0
    const b = new TokenBucket({ rate: 1000, burst: 500, now: () => now })
    expect(b.consume(500)).toBe(0)
    expect(b.consume(250)).toBe(250) // 250 bytes of debt at 1000 B/s
    now += 250
    expect(b.available).toBeCloseTo(0)
    now += 500
    expect(b.available).toBeCloseTo(500) // refills to the burst, not beyond
    now += 10_000
    expect(b.available).toBe(500)
  })

  it('holds the long-run rate: a sender that obeys the waits gets rate x time', () => {
    let now = 0
    const b = new TokenBucket({ rate: 2_000_000, now: () => now })
    let sent = 0
    while (now < 10_000) {
      const wait = b.consume(65_536)
      sent += 65_536
      now += Math.max(wait, 1)
    }
    // 10 s at 2 MB/s plus one burst
    expect(sent).toBeGreaterThan(20_000_000)
    expect(sent).toBeLessThan(20_000_000 + b.burst + 2 * 65_536)
  })

  it('tryTake refuses without going into debt', () => {
    const now = 0
    const b = new TokenBucket({ rate: 100, burst: 100, now: () => now })
    expect(b.tryTake(80)).toBe(true)
    expect(b.tryTake(30)).toBe(false)
    expect(b.available).toBe(20)
  })

  it('add() gives tokens earned otherwise than by time, up to the burst', () => {
    const now = 0
    const b = new TokenBucket({ rate: 4, burst: 64, now: () => now })
    expect(b.tryTake(64)).toBe(true)
    b.add(0.5)
    b.add(0.75)
    expect(b.tryTake(1)).toBe(true)
    expect(b.available).toBeCloseTo(0.25)
    b.add(1000)
    expect(b.available).toBe(64)
  })

  it('several buckets: the slowest decides', () => {
    const now = 0
    const fast = new TokenBucket({ rate: 1000, burst: 100, now: () => now })
    const slow = new TokenBucket({ rate: 100, burst: 100, now: () => now })
    expect(consumeAll([fast, undefined, slow], 200)).toBe(1000)
  })

  it('converts Mbit/s and rejects a zero rate', () => {
    expect(mbpsToBytesPerSecond(8)).toBe(1_000_000)
    expect(() => new TokenBucket({ rate: 0 })).toThrow(RangeError)
  })
})
