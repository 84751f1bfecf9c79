/** probe()'s own checks of its input, made before it asks for a tunnel: the control API answers them with a 400. */
import { describe, it, expect } from 'vitest'
import { MAX_PROBE_TIMEOUT_MS, probe } from '../../src/relay/probe.ts'
import type { Connect } from '../../src/relay/probe.ts'

const noTunnel: Connect = async () => { throw new Error('asked for a tunnel') }

describe('probe() input', () => {
  it('refuses a timeout past MAX_PROBE_TIMEOUT_MS (a timer fires at once past 2^31 - 1 ms), and one not positive', async () => {
    for (const timeoutMs of [MAX_PROBE_TIMEOUT_MS + 1, 3_000_000_000, 5_000_000_000, 0, -1, NaN]) {
      const err = await probe(noTunnel, 'http://127.0.0.1/', { timeoutMs }).then(() => undefined, e => e)
      expect(err?.name, String(timeoutMs)).toBe('ProbeInputError')
      expect(err.message).toBe(`timeout must be a positive number of milliseconds up to ${MAX_PROBE_TIMEOUT_MS}, not ${timeoutMs}`)
    }
    // the longest allowed asks for its tunnel
    const longest = await probe(noTunnel, 'http://127.0.0.1/', { timeoutMs: MAX_PROBE_TIMEOUT_MS })
    expect(longest.ok).toBe(false)
  })
})
