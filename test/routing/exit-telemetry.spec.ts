import { describe, it, expect } from 'vitest'
import { ExitTelemetry, UNKNOWN_PREDICTION, hourOfWeek } from '../../src/routing/exit-telemetry.ts'
import { PRIOR_FAILURES, PRIOR_SUCCESSES } from '../../src/routing/constants.ts'

const minute = 60_000
const hour = 60 * minute
const day = 24 * hour
// 2026-11-24 is a Tuesday
const TUE = Date.UTC(2026, 10, 24)

const ok = (t: ExitTelemetry, exit: string, at: number, bytesPerSecond: number, ttfbMs = 200): void => {
  const bytes = 1_000_000
  t.recordSuccess(exit, { at, bytes, durationMs: bytes / bytesPerSecond * 1000, ttfbMs })
}

describe('hourOfWeek', () => {
  it('counts UTC hours from Sunday 00:00', () => {
    expect(new Date(TUE).getUTCDay()).toBe(2)
    expect(hourOfWeek(TUE + 19 * hour + 30 * minute)).toBe(2 * 24 + 19)
    expect(hourOfWeek(TUE - 2 * day)).toBe(0) // Sunday 00:00
    expect(hourOfWeek(TUE + 4 * day + 23 * hour + 59 * minute)).toBe(167) // Saturday 23:59
    expect(hourOfWeek(TUE + 5 * day)).toBe(0)
    expect(hourOfWeek(0)).toBe(4 * 24) // the epoch was a Thursday
    expect(hourOfWeek(-hour)).toBe(4 * 24 - 1)
  })
})

describe('ExitTelemetry', () => {
  it('knows nothing of an exit it never saw', () => {
    const t = new ExitTelemetry()
    expect(t.predict('x', TUE)).toBe(UNKNOWN_PREDICTION)
    expect(UNKNOWN_PREDICTION.bandwidth).toBeUndefined()
    expect(UNKNOWN_PREDICTION.ttfbMs).toBeUndefined()
    expect(UNKNOWN_PREDICTION.confidence).toBe(0)
    expect(UNKNOWN_PREDICTION.failureRate).toBeCloseTo(PRIOR_FAILURES / (PRIOR_SUCCESSES + PRIOR_FAILURES))
  })

  it('halves the weight of evidence every half-life, keeping its average', () => {
    const t = new ExitTelemetry({ halfLife: hour })
    ok(t, 'x', TUE, 2_000_000, 300)
    expect(t.predict('x', TUE).successes).toBeCloseTo(1)
    expect(t.predict('x', TUE + hour).successes).toBeCloseTo(0.5)
    expect(t.predict('x', TUE + 2 * hour).successes).toBeCloseTo(0.25)
    expect(t.predict('x', TUE + 2 * hour).ttfbMs).toBeCloseTo(300)
    expect(t.predict('x', TUE + 10 * hour).confidence).toBeLessThan(t.predict('x', TUE).confidence)
  })

  it('follows recent samples more than old ones', () => {
    const t = new ExitTelemetry()
    for (let i = 0; i < 10; i++) ok(t, 'x', TUE + i * minute, 1_000_000)
    for (let i = 0; i < 10; i++) ok(t, 'x', TUE + 2 * hour + i * minute, 3_000_000)
    const bw = t.predict('x', TUE + 2 * hour + 10 * minute).bandwidth!
    expect(bw).toBeGreaterThan(2_000_000)
    expect(bw).toBeLessThan(3_000_000)
  })

  it('accepts samples out of order, the older one counting less', () => {
    const t = new ExitTelemetry()
    ok(t, 'x', TUE + hour, 4_000_000, 100)
    ok(t, 'x', TUE, 1_000_000, 400) // ended earlier, reported later
    const p = t.predict('x', TUE + hour)
    expect(p.successes).toBeCloseTo(1.5)
    expect(p.ttfbMs).toBeCloseTo((100 + 0.5 * 400) / 1.5)
  })

  it('weighs small transfers less: they measure latency, not bandwidth', () => {
    const t = new ExitTelemetry()
    t.recordSuccess('x', { at: TUE, bytes: 1024, durationMs: 100 }) // 10 KB/s
    t.recordSuccess('x', { at: TUE, bytes: 10_000_000, durationMs: 1000 }) // 10 MB/s
    expect(t.predict('x', TUE).bandwidth).toBeGreaterThan(9_900_000)
  })

  it('counts failures the exit caused, not the consumer\'s own', () => {
    const t = new ExitTelemetry()
    for (let i = 0; i < 8; i++) ok(t, 'x', TUE, 1_000_000)
    t.recordFailure('x', { at: TUE, status: 'POLICY_DENIED' })
    t.recordFailure('x', { at: TUE, status: 'INSUFFICIENT_CREDIT' })
    expect(t.predict('x', TUE).failures).toBe(0)
    t.recordFailure('x', { at: TUE, status: 'TIMEOUT' })
    t.recordFailure('x', { at: TUE })
    const p = t.predict('x', TUE)
    expect(p.failures).toBeCloseTo(2)
    expect(p.successes).toBeCloseTo(8)
    expect(p.failureRate).toBeCloseTo((2 + PRIOR_FAILURES) / (10 + PRIOR_SUCCESSES + PRIOR_FAILURES))
    // a failure-only exit has no bandwidth estimate
    t.recordFailure('y', { at: TUE, status: 'BUSY' })
    expect(t.predict('y', TUE).bandwidth).toBeUndefined()
  })

  it('ignores nonsense samples', () => {
    const t = new ExitTelemetry()
    t.recordSuccess('x', { at: TUE, bytes: 100, durationMs: 0, ttfbMs: Number.NaN })
    t.recordSuccess('x', { at: TUE, bytes: -1, durationMs: 10, ttfbMs: -5 })
    const p = t.predict('x', TUE)
    expect(p.bandwidth).toBeUndefined()
    expect(p.ttfbMs).toBeUndefined()
    expect(p.successes).toBeCloseTo(2)
  })

  it('forgets the least recently updated exit beyond maxExits', () => {
    const t = new ExitTelemetry({ maxExits: 2 })
    ok(t, 'a', TUE, 1)
    ok(t, 'b', TUE, 1)
    ok(t, 'a', TUE, 1)
    ok(t, 'c', TUE, 1)
    expect(t.size).toBe(2)
    expect(t.predict('b', TUE)).toBe(UNKNOWN_PREDICTION)
    expect(t.predict('a', TUE)).not.toBe(UNKNOWN_PREDICTION)
    t.forget('a')
    expect(t.predict('a', TUE)).toBe(UNKNOWN_PREDICTION)
  })

  it('predicts an exit that is slow every Tuesday evening slow then, and only then', () => {
    const t = new ExitTelemetry()
    const start = TUE - 2 * day - 21 * day // a Sunday three weeks earlier
    const end = TUE + 19 * hour + 50 * minute
    const slowHour = hourOfWeek(TUE + 19 * hour)
    for (let at = start; at <= end; at += 20 * minute) {
      ok(t, 'evening', at, hourOfWeek(at) === slowHour ? 1_000_000 : 10_000_000)
    }
    const at = (d: number, h: number, m = 0): number => TUE + d * day + h * hour + m * minute
    // right after the slow samples of this very evening
    expect(t.predict('evening', at(0, 19, 55)).bandwidth).toBeLessThan(2_500_000)
    // next Tuesday evening, with no fresh samples: the weekly profile alone
    expect(t.predict('evening', at(7, 19, 30)).bandwidth).toBeLessThan(1_500_000)
    for (const [d, h] of [[0, 21], [1, 19], [2, 10], [6, 18], [7, 18], [7, 20]]) {
      expect(t.predict('evening', at(d, h, 30)).bandwidth, `day ${d} ${h}:30`).toBeGreaterThan(6_000_000)
    }
  })
})
