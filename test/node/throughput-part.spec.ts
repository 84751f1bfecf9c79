import { describe, it, expect } from 'vitest'
import { THROUGHPUT_SAMPLES, ThroughputHistory } from '../../src/node/throughput-part.ts'

describe('throughput history', () => {
  it('keeps the last 150 samples of both totals, null for a part the node does not run, and hands out copies', () => {
    let t = 1_000
    let exitBytes = 0
    let exitEnabled = true
    const h = new ThroughputHistory(() => ({ exit: { enabled: exitEnabled, bytesIn: exitBytes, bytesOut: 2 * exitBytes }, proxy: undefined }), () => t)
    for (let i = 0; i < THROUGHPUT_SAMPLES + 10; i++) {
      h.sample()
      t += 2000
      exitBytes += 100
    }
    const { intervalMs, samples } = h.history()
    expect(intervalMs).toBe(2000)
    expect(samples).toHaveLength(THROUGHPUT_SAMPLES)
    // the first ten went
    expect(samples[0]).toEqual([1_000 + 10 * 2000, 1000 * 3, null])
    expect(samples.at(-1)).toEqual([1_000 + (THROUGHPUT_SAMPLES + 9) * 2000, (THROUGHPUT_SAMPLES + 9) * 300, null])
    samples.length = 0
    expect(h.history().samples).toHaveLength(THROUGHPUT_SAMPLES)
    exitEnabled = false
    h.sample()
    expect(h.history().samples.at(-1)![1]).toBeNull()
  })
})
