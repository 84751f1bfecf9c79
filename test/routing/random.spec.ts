import { describe, it, expect } from 'vitest'
import { createSampler, mulberry32, shuffle } from '../../src/routing/random.ts'

const stats = (xs: number[]): { mean: number, variance: number } => {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length
  return { mean, variance: xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length }
}
const draws = (n: number, f: () => number): number[] => Array.from({ length: n }, f)

describe('mulberry32', () => {
  it('replays a seed exactly and differs across seeds', () => {
    const a = mulberry32(1)
    const b = mulberry32(1)
    const c = mulberry32(2)
    const xs = draws(100, a)
    expect(draws(100, b)).toEqual(xs)
    expect(draws(100, c)).not.toEqual(xs)
  })

  it('is uniform on [0, 1)', () => {
    const xs = draws(50_000, mulberry32(3))
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0)
    expect(Math.max(...xs)).toBeLessThan(1)
    const { mean, variance } = stats(xs)
    expect(mean).toBeCloseTo(0.5, 2)
    expect(variance).toBeCloseTo(1 / 12, 2)
  })
})

describe('createSampler', () => {
  const s = createSampler(mulberry32(4))

  it('draws standard normals', () => {
    const { mean, variance } = stats(draws(50_000, s.normal))
    expect(Math.abs(mean)).toBeLessThan(0.02)
    expect(variance).toBeCloseTo(1, 1)
  })

  it('draws gammas with mean and variance = shape, also for shape < 1', () => {
    for (const shape of [0.3, 1, 2.5, 40]) {
      const { mean, variance } = stats(draws(40_000, () => s.gamma(shape)))
      expect(mean / shape).toBeCloseTo(1, 1)
      expect(variance / shape).toBeCloseTo(1, 1)
    }
  })

  it('draws betas with mean a / (a + b), within 0..1', () => {
    for (const [a, b] of [[3, 1], [1, 1], [50, 3], [0.5, 0.5]]) {
      const xs = draws(40_000, () => s.beta(a, b))
      expect(xs.every(x => x >= 0 && x <= 1)).toBe(true)
      expect(stats(xs).mean).toBeCloseTo(a / (a + b), 2)
    }
  })
})

describe('shuffle', () => {
  it('keeps every item, and puts each first about equally often', () => {
    const random = mulberry32(11)
    const firsts = [0, 0, 0, 0]
    for (let i = 0; i < 4000; i++) {
      const order = shuffle([0, 1, 2, 3], random)
      expect([...order].sort()).toEqual([0, 1, 2, 3])
      firsts[order[0]]++
    }
    for (const n of firsts) expect(n).toBeGreaterThan(850)
  })
})
