import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import {
  DEFAULT_WEIGHTS, ExitTelemetry, UNKNOWN_PREDICTION, availableBandwidth, hourOfWeek, scoreCandidate, selectExits, topK
} from '../../src/routing/selection.ts'
import { mulberry32 } from '../../src/routing/random.ts'
import type { Candidate, Prediction } from '../../src/routing/selection.ts'

const minute = 60_000
const hour = 60 * minute
const day = 24 * hour
// 2026-11-24 is a Tuesday
const TUE = Date.UTC(2026, 10, 24)
const NOW = TUE + 12 * hour

const candidate = (over: Partial<Candidate> = {}): Candidate => ({
  peerId: 'exit',
  region: 'de',
  capacityMbps: 100,
  load: 0.2,
  pricePerGbMicro: 500_000,
  rttMs: 40,
  reputation: 0.7,
  verified: 'verified',
  ...over
})

const prediction = (over: Partial<Prediction> = {}): Prediction => ({
  bandwidth: 5_000_000,
  ttfbMs: 300,
  failureRate: 0.05,
  confidence: 0.9,
  successes: 40,
  failures: 2,
  bandwidthSamples: 10,
  ttfbSamples: 40,
  ...over
})

const ok = (t: ExitTelemetry, exit: string, at: number, bytesPerSecond: number, ttfbMs = 250): void => {
  const bytes = 1_000_000
  t.recordSuccess(exit, { at, bytes, durationMs: bytes / bytesPerSecond * 1000, ttfbMs })
}

describe('scoreCandidate', () => {
  const arbCandidate = fc.record({
    peerId: fc.constant('x'),
    region: fc.constant('de'),
    capacityMbps: fc.double({ min: 0, max: 10_000, noNaN: true }),
    load: fc.double({ min: 0, max: 1, noNaN: true }),
    pricePerGbMicro: fc.oneof(fc.integer({ min: 0, max: 100_000_000 }), fc.bigInt({ min: 0n, max: 100_000_000n })),
    rttMs: fc.option(fc.double({ min: 0, max: 5000, noNaN: true }), { nil: undefined }),
    reputation: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
    verified: fc.constantFrom('verified' as const, 'mismatch' as const, 'unverifiable' as const)
  })
  const arbPrediction = fc.record({
    bandwidth: fc.option(fc.double({ min: 0, max: 1e9, noNaN: true }), { nil: undefined }),
    ttfbMs: fc.option(fc.double({ min: 0, max: 10_000, noNaN: true }), { nil: undefined }),
    failureRate: fc.double({ min: 0, max: 1, noNaN: true })
  }).map(p => prediction(p))
  const pair = (min: number, max: number): fc.Arbitrary<[number, number]> =>
    fc.tuple(fc.double({ min, max, noNaN: true }), fc.double({ min, max, noNaN: true })).map(([a, b]) => a <= b ? [a, b] : [b, a])

  /** score(low) <= score(high) (or >= when `falling`) for every candidate, prediction and pair of values. */
  const monotonic = (name: string, min: number, max: number, apply: (c: Candidate, p: Prediction, x: number) => [Candidate, Prediction], falling = false): void => {
    it(`is monotonic in ${name}`, () => {
      fc.assert(fc.property(arbCandidate, arbPrediction, pair(min, max), (c, p, [lo, hi]) => {
        const a = scoreCandidate(...apply(c, p, lo))
        const b = scoreCandidate(...apply(c, p, hi))
        expect(falling ? a >= b : a <= b).toBe(true)
      }), { numRuns: 500 })
    })
  }

  monotonic('reputation', 0, 1, (c, p, x) => [{ ...c, reputation: x }, p])
  monotonic('RTT', 0, 5000, (c, p, x) => [{ ...c, rttMs: x }, p], true)
  monotonic('predicted bandwidth', 0, 1e9, (c, p, x) => [c, { ...p, bandwidth: x }])
  monotonic('advertised capacity', 0, 10_000, (c, p, x) => [{ ...c, capacityMbps: x }, p])
  monotonic('price', 0, 1e8, (c, p, x) => [{ ...c, pricePerGbMicro: x }, p], true)
  monotonic('load', 0, 1, (c, p, x) => [{ ...c, load: x }, p], true)
  monotonic('our own open tunnels through it', 0, 1000, (c, p, x) => [{ ...c, ownTunnels: Math.floor(x) }, p], true)
  monotonic('failure rate', 0, 1, (c, p, x) => [c, { ...p, failureRate: x }], true)
  monotonic('time to first byte', 0, 10_000, (c, p, x) => [c, { ...p, ttfbMs: x }], true)

  it('is strictly better for a strictly better factor away from the bounds', () => {
    const c = candidate()
    const p = prediction()
    const s = scoreCandidate(c, p)
    expect(scoreCandidate({ ...c, reputation: 0.8 }, p)).toBeGreaterThan(s)
    expect(scoreCandidate({ ...c, rttMs: 20 }, p)).toBeGreaterThan(s)
    expect(scoreCandidate(c, { ...p, bandwidth: 6_000_000 })).toBeGreaterThan(s)
    expect(scoreCandidate({ ...c, pricePerGbMicro: 400_000n }, p)).toBeGreaterThan(s)
    expect(scoreCandidate({ ...c, load: 0.1 }, p)).toBeGreaterThan(s)
    expect(scoreCandidate(c, { ...p, failureRate: 0.01 })).toBeGreaterThan(s)
    expect(scoreCandidate(c, { ...p, ttfbMs: 200 })).toBeGreaterThan(s)
  })

  it('stays within 0..1, also for nonsense input', () => {
    fc.assert(fc.property(arbCandidate, arbPrediction, (c, p) => {
      const s = scoreCandidate(c, p)
      expect(s >= 0 && s <= 1).toBe(true)
    }))
    const s = scoreCandidate(candidate({ load: Number.NaN, capacityMbps: -1, rttMs: -5, reputation: 7 }), prediction({ bandwidth: Number.NaN, failureRate: 2 }))
    expect(s >= 0 && s <= 1).toBe(true)
  })

  it('believes measured bandwidth only up to what the ad leaves free', () => {
    const c = candidate({ capacityMbps: 80, load: 0.5 }) // 40 Mbit/s free = 5 MB/s
    expect(availableBandwidth(c, undefined)).toBe(5_000_000)
    expect(availableBandwidth(c, 2_000_000)).toBe(2_000_000)
    expect(availableBandwidth(c, 50_000_000)).toBe(5_000_000)
    expect(scoreCandidate(c, prediction({ bandwidth: 50_000_000 }))).toBe(scoreCandidate(c, prediction({ bandwidth: 5_000_000 })))
  })

  it('halves the score of an exit whose addresses contradict its region', () => {
    const p = prediction()
    const verified = scoreCandidate(candidate({ verified: 'verified' }), p)
    expect(scoreCandidate(candidate({ verified: 'mismatch' }), p)).toBeCloseTo(verified * DEFAULT_WEIGHTS.regionMismatch)
    expect(scoreCandidate(candidate({ verified: 'unverifiable' }), p)).toBeLessThanOrEqual(verified)
    expect(scoreCandidate(candidate({ verified: 'mismatch' }), p)).toBeLessThan(scoreCandidate(candidate({ verified: 'unverifiable' }), p))
  })

  it('follows the weights: with only price weighted, the cheaper exit wins despite worse everything else', () => {
    const w = { ...DEFAULT_WEIGHTS, reputation: 0, rtt: 0, ttfb: 0, bandwidth: 0, load: 0, reliability: 0 }
    const cheap = scoreCandidate(candidate({ pricePerGbMicro: 1, rttMs: 900, reputation: 0 }), prediction({ bandwidth: 1, failureRate: 0.9 }), w)
    const dear = scoreCandidate(candidate({ pricePerGbMicro: 1e7 }), prediction(), w)
    expect(cheap).toBeGreaterThan(dear)
  })
})

describe('our own open tunnels through an exit', () => {
  it('count as load: what the ad leaves free is shared with the tunnel being chosen for', () => {
    const c = candidate({ capacityMbps: 80, load: 0.5 }) // 5 MB/s free
    expect(scoreCandidate({ ...c, ownTunnels: 0 }, prediction())).toBe(scoreCandidate(c, prediction()))
    expect(availableBandwidth({ ...c, ownTunnels: 1 }, undefined)).toBeCloseTo(2_500_000)
    expect(availableBandwidth({ ...c, ownTunnels: 4 }, undefined)).toBeCloseTo(1_000_000)
    // junk counts as none, never as a better exit
    expect(scoreCandidate({ ...c, ownTunnels: Number.NaN }, prediction())).toBe(scoreCandidate(c, prediction()))
    expect(scoreCandidate({ ...c, ownTunnels: -3 }, prediction())).toBe(scoreCandidate(c, prediction()))
  })

  it('spread tunnels held open over equal exits, and over unequal ones by what each leaves free', () => {
    const telemetry = new ExitTelemetry()
    const pick = (exits: Candidate[], open: Map<string, number>, n: number): Map<string, number> => {
      for (let i = 0; i < n; i++) {
        const first = selectExits(exits.map(e => ({ ...e, ownTunnels: open.get(e.peerId) })), telemetry, { now: NOW, random: mulberry32(i), explore: 0, limit: 1 })[0].candidate.peerId
        open.set(first, (open.get(first) ?? 0) + 1)
      }
      return open
    }
    const equal = pick(['a', 'b', 'c'].map(peerId => candidate({ peerId })), new Map(), 12)
    expect([...equal.values()]).toEqual([4, 4, 4])
    // without our own tunnels counted, one exit took them all
    const blind = selectExits(['a', 'b', 'c'].map(peerId => candidate({ peerId })), telemetry, { now: NOW, random: mulberry32(1), explore: 0, limit: 1 })[0].candidate.peerId
    expect(blind).toBe('a')
    // an exit with twice the free share gets about twice the tunnels
    const unequal = pick([candidate({ peerId: 'big', load: 0 }), candidate({ peerId: 'half', load: 0.5 })], new Map(), 12)
    expect(unequal.get('big')).toBeGreaterThan(unequal.get('half')!)
    expect(unequal.get('half')).toBeGreaterThanOrEqual(3)
  })
})

describe('topK', () => {
  it('equals the first k of a full ranking, ties kept in input order', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 200 }), fc.nat({ max: 220 }), (values, k) => {
      const scores = Float64Array.from(values)
      const full = values.map((_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b)
      expect(topK(scores, k)).toEqual(full.slice(0, k))
    }))
  })
})

describe('selectExits', () => {
  /** Ten exits with a long, good record, and one nobody has tried. */
  const market = (): { telemetry: ExitTelemetry, candidates: Candidate[] } => {
    const telemetry = new ExitTelemetry()
    const candidates: Candidate[] = []
    for (let i = 0; i < 10; i++) {
      const id = `known-${i}`
      for (let j = 0; j < 40; j++) {
        const at = NOW - j * minute
        if (j % 20 === 19) telemetry.recordFailure(id, { at, status: 'TIMEOUT' })
        else ok(telemetry, id, at, 6_000_000 + i * 100_000)
      }
      candidates.push(candidate({ peerId: id }))
    }
    candidates.push(candidate({ peerId: 'new', reputation: undefined }))
    return { telemetry, candidates }
  }

  const firstPicks = (candidates: Candidate[], telemetry: ExitTelemetry, explore: number, seed: number, trials = 2000): Map<string, number> => {
    const random = mulberry32(seed)
    const counts = new Map<string, number>()
    for (let i = 0; i < trials; i++) {
      const first = selectExits(candidates, telemetry, { now: NOW, random, explore, limit: 1 })[0].candidate.peerId
      counts.set(first, (counts.get(first) ?? 0) + 1)
    }
    return counts
  }

  it('without exploration, always puts the best expected exit first', () => {
    const { telemetry, candidates } = market()
    const best = candidates.reduce((a, b) => scoreCandidate(b, telemetry.predict(b.peerId, NOW)) > scoreCandidate(a, telemetry.predict(a.peerId, NOW)) ? b : a)
    expect(best.peerId).toBe('known-9') // the fastest
    expect(firstPicks(candidates, telemetry, 0, 1)).toEqual(new Map([['known-9', 2000]]))
    const ranked = selectExits(candidates, telemetry, { now: NOW, random: mulberry32(1), explore: 0 })
    expect(ranked.map(r => r.candidate.peerId)).toEqual([...Array.from({ length: 10 }, (_, i) => `known-${9 - i}`), 'new'])
    expect(ranked.every(r => !r.explored)).toBe(true)
  })

  it('with exploration, puts a brand-new exit first in about `explore` of the selections', () => {
    const { telemetry, candidates } = market()
    for (const [explore, seed] of [[0.1, 7], [0.1, 8], [0.25, 9]]) {
      const fraction = (firstPicks(candidates, telemetry, explore, seed).get('new') ?? 0) / 2000
      // binomial(2000, explore): 4 standard deviations either side
      const sd = Math.sqrt(explore * (1 - explore) / 2000)
      expect(fraction).toBeGreaterThan(explore - 4 * sd)
      expect(fraction).toBeLessThan(explore + 4 * sd)
    }
    expect(firstPicks(candidates, telemetry, 1, 3, 200).get('new')).toBe(200)
  })

  it('explores the most promising of several new exits most often', () => {
    const { telemetry, candidates } = market()
    const extra = [
      candidate({ peerId: 'new-slow', capacityMbps: 2, reputation: undefined }),
      candidate({ peerId: 'new-dear', pricePerGbMicro: 50_000_000, capacityMbps: 5, reputation: undefined })
    ]
    const counts = firstPicks([...candidates, ...extra], telemetry, 1, 11, 1000)
    expect(counts.get('new')!).toBeGreaterThan(counts.get('new-slow') ?? 0)
    expect(counts.get('new')!).toBeGreaterThan(counts.get('new-dear') ?? 0)
    expect([...counts.keys()].every(k => k.startsWith('new'))).toBe(true)
  })

  it('never promotes a new exit whose addresses contradict its region', () => {
    const { telemetry, candidates } = market()
    candidates[10] = { ...candidates[10], verified: 'mismatch' }
    expect(firstPicks(candidates, telemetry, 1, 5, 500).get('new') ?? 0).toBe(0)
  })

  it('is deterministic for a seed and varies across seeds', () => {
    const { telemetry, candidates } = market()
    const many = [...candidates, ...Array.from({ length: 30 }, (_, i) => candidate({ peerId: `fresh-${i}`, capacityMbps: 50 + i }))]
    const run = (seed: number): string[] => {
      const random = mulberry32(seed)
      return Array.from({ length: 50 }, () => selectExits(many, telemetry, { now: NOW, random, explore: 0.5, limit: 3 }).map(r => r.candidate.peerId).join(','))
    }
    expect(run(42)).toEqual(run(42))
    expect(run(42)).not.toEqual(run(43))
  })

  it('ranks an exit that is slow on Tuesday evenings below a steady one then, and above it otherwise', () => {
    const telemetry = new ExitTelemetry()
    const start = TUE - 23 * day // a Sunday three weeks earlier
    const slowHour = hourOfWeek(TUE + 19 * hour)
    for (let at = start; at < TUE + 19 * hour; at += 20 * minute) {
      ok(telemetry, 'evening', at, hourOfWeek(at) === slowHour ? 1_000_000 : 10_000_000)
      ok(telemetry, 'steady', at, 5_000_000)
    }
    const exits = [candidate({ peerId: 'evening', capacityMbps: 1000, load: 0 }), candidate({ peerId: 'steady', capacityMbps: 1000, load: 0 })]
    const first = (at: number): string => selectExits(exits, telemetry, { now: at, random: mulberry32(1), explore: 0 })[0].candidate.peerId
    const at = (d: number, h: number): number => TUE + d * day + h * hour + 30 * minute
    expect(first(at(0, 19))).toBe('steady')
    expect(first(at(7, 19))).toBe('steady')
    for (const [d, h] of [[0, 17], [0, 21], [1, 19], [2, 9], [4, 19], [7, 18], [7, 20]]) {
      expect(first(at(d, h)), `day ${d} ${h}:30`).toBe('evening')
    }
  })

  it('ranks unknown exits by their ads on a cold start', () => {
    const telemetry = new ExitTelemetry()
    const cands = [candidate({ peerId: 'small', capacityMbps: 10 }), candidate({ peerId: 'big', capacityMbps: 500 }), candidate({ peerId: 'mid', capacityMbps: 100 })]
    expect(selectExits(cands, telemetry, { now: NOW, random: mulberry32(1), explore: 0 }).map(r => r.candidate.peerId)).toEqual(['big', 'mid', 'small'])
    expect(selectExits([], telemetry, { now: NOW, random: mulberry32(1) })).toEqual([])
    expect(selectExits(cands, telemetry, { now: NOW, random: mulberry32(1), limit: 0 })).toEqual([])
  })

  it('returns the candidates it was given, typed, with their predictions', () => {
    const telemetry = new ExitTelemetry()
    const cands = [{ ...candidate({ peerId: 'a' }), multiaddrs: ['/ip4/1.2.3.4/tcp/1'] }]
    const [r] = selectExits(cands, telemetry, { now: NOW, random: mulberry32(1), explore: 0 })
    expect(r.candidate.multiaddrs).toEqual(['/ip4/1.2.3.4/tcp/1'])
    expect(r.prediction).toBe(UNKNOWN_PREDICTION)
    expect(r.score).toBe(scoreCandidate(cands[0], UNKNOWN_PREDICTION))
  })

  it('selects the top 10 of 10,000 candidates quickly', () => {
    const telemetry = new ExitTelemetry()
    const random = mulberry32(99)
    const cands = Array.from({ length: 10_000 }, (_, i) => candidate({
      peerId: `exit-${i}`, capacityMbps: 1 + random() * 1000, load: random(), pricePerGbMicro: Math.floor(random() * 2_000_000), rttMs: random() * 300, reputation: random()
    }))
    for (let i = 0; i < 2000; i++) ok(telemetry, `exit-${i * 5}`, NOW - i * 1000, 100_000 + random() * 10_000_000)
    const times: number[] = []
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now()
      selectExits(cands, telemetry, { now: NOW, random, explore: 0.1, limit: 10 })
      times.push(performance.now() - t0)
    }
    times.sort((a, b) => a - b)
    // the bench measures the real figure; this only catches an accidental O(n²) on a busy test box
    expect(times[15]).toBeLessThan(50)
  })
})
