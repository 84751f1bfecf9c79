/**
 * Randomness for selection, injected rather than global so that tests,
 * benchmarks and simulations replay exactly: a seeded PRNG and the
 * distributions Thompson sampling draws from (normal, gamma, beta).
 *
 * Nothing here is for cryptography; keys and nonces come from
 * `@libp2p/crypto`.
 */

/** A source of uniform numbers in [0, 1), like `Math.random`. */
export type RandomSource = () => number

/**
 * mulberry32: a 32-bit state PRNG, tiny and fast, with good enough
 * statistics for sampling (it passes gjrand's and PractRand's smaller
 * batteries). The same seed gives the same sequence on every platform.
 */
export function mulberry32 (seed: number): RandomSource {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Puts `items` in a random order, in place (Fisher-Yates), and returns them. */
export function shuffle<T> (items: T[], random: RandomSource): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const t = items[i]
    items[i] = items[j]
    items[j] = t
  }
  return items
}

/** Draws from the distributions selection needs, all from one uniform source. */
export interface Sampler {
  /** Standard normal N(0, 1). */
  normal: () => number
  /** Gamma(shape, 1), shape > 0. */
  gamma: (shape: number) => number
  /** Beta(a, b), a > 0 and b > 0. */
  beta: (a: number, b: number) => number
}

export function createSampler (random: RandomSource): Sampler {
  // Box-Muller yields normals in pairs; keeping the second halves the cost
  let spare: number | undefined

  // 1 - random() lies in (0, 1], so the logarithms below stay finite
  const open = (): number => 1 - random()

  const normal = (): number => {
    if (spare !== undefined) {
      const z = spare
      spare = undefined
      return z
    }
    const r = Math.sqrt(-2 * Math.log(open()))
    const theta = 2 * Math.PI * random()
    spare = r * Math.sin(theta)
    return r * Math.cos(theta)
  }

  // Marsaglia and Tsang, "A simple method for generating gamma variables"
  // (2000): about 1.03 normal draws per gamma draw for shape >= 1; smaller
  // shapes are boosted by U^(1/shape)
  const gamma = (shape: number): number => {
    if (shape < 1) return gamma(shape + 1) * Math.pow(open(), 1 / shape)
    const d = shape - 1 / 3
    const c = 1 / Math.sqrt(9 * d)
    for (;;) {
      let x: number
      let v: number
      do {
        x = normal()
        v = 1 + c * x
      } while (v <= 0)
      v = v * v * v
      const u = open()
      const x2 = x * x
      if (u < 1 - 0.0331 * x2 * x2) return d * v
      if (Math.log(u) < 0.5 * x2 + d * (1 - v + Math.log(v))) return d * v
    }
  }

  const beta = (a: number, b: number): number => {
    const x = gamma(a)
    const y = gamma(b)
    return x / (x + y)
  }

  return { normal, gamma, beta }
}
