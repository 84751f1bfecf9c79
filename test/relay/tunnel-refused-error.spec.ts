import { describe, it, expect } from 'vitest'
import { TUNNEL_REFUSAL_STATUSES, TunnelRefusedError } from '../../src/index.ts'
import { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
import { NO_ANSWER, NO_EXIT } from '../../src/relay/status-codes.ts'
import type { TunnelRefusalStatus } from '../../src/index.ts'

describe('TunnelRefusedError.status, as an embedding app branches on it', () => {
  it('TUNNEL_REFUSAL_STATUSES lists every status a refusal can carry: the wire\'s, but OK, NO_EXIT and NO_ANSWER', () => {
    // (protons puts a codec function beside the values)
    const wire = Object.values(TunnelStatus).filter(s => typeof s === 'string' && s !== TunnelStatus.OK && s !== TunnelStatus.UNUSED)
    expect([...TUNNEL_REFUSAL_STATUSES].sort()).toEqual([...wire, NO_EXIT, NO_ANSWER].sort())
  })

  it('is typed: a misspelt status in a comparison does not compile (npm run typecheck)', () => {
    const err = new TunnelRefusedError('POLICY_DENIED')
    const status: TunnelRefusalStatus = err.status
    // @ts-expect-error 'POLICY_DENY' is no status: with `status: string` this compiled and was always false
    expect(err.status === 'POLICY_DENY').toBe(false)
    expect(status).toBe('POLICY_DENIED')
    expect(err.name).toBe('TunnelRefusedError')
  })
})
