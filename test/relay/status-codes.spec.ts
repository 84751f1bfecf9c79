import { describe, it, expect } from 'vitest'
import { NO_ANSWER, NO_EXIT, httpStatusFor, socksReplyFor } from '../../src/relay/status-codes.ts'
import { TUNNEL_REFUSAL_STATUSES } from '../../src/errors.ts'
import type { Outcome } from '../../src/relay/status-codes.ts'
import { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'

// The e2e tests see most of these through real curl; DNS_FAILED is checked
// here because provoking it for real would send a query to the system resolver.
describe('tunnel status -> client reply', () => {
  it('maps to SOCKS5 reply codes (RFC 1928 §6)', () => {
    expect(socksReplyFor(TunnelStatus.OK)).toBe(0x00)
    expect(socksReplyFor(TunnelStatus.POLICY_DENIED)).toBe(0x02)
    expect(socksReplyFor(TunnelStatus.INSUFFICIENT_CREDIT)).toBe(0x02)
    expect(socksReplyFor(TunnelStatus.DNS_FAILED)).toBe(0x04)
    expect(socksReplyFor(TunnelStatus.UNREACHABLE)).toBe(0x04)
    expect(socksReplyFor(TunnelStatus.CONNECT_REFUSED)).toBe(0x05)
    expect(socksReplyFor(TunnelStatus.TIMEOUT)).toBe(0x06)
    expect(socksReplyFor(NO_EXIT)).toBe(0x03)
    expect(socksReplyFor(TunnelStatus.BUSY)).toBe(0x01)
    expect(socksReplyFor(TunnelStatus.QUOTA_EXCEEDED)).toBe(0x01)
  })

  it('every refusal has the SOCKS5 code README lists for it ("Using the proxies")', () => {
    const readme: Record<string, number> = {
      BUSY: 0x01, QUOTA_EXCEEDED: 0x01, OUTSIDE_SCHEDULE: 0x01, RATE_LIMITED: 0x01, BAD_REQUEST: 0x01,
      POLICY_DENIED: 0x02, INSUFFICIENT_CREDIT: 0x02,
      NO_EXIT: 0x03,
      DNS_FAILED: 0x04, UNREACHABLE: 0x04,
      CONNECT_REFUSED: 0x05,
      TIMEOUT: 0x06, NO_ANSWER: 0x06
    }
    expect(Object.keys(readme).sort()).toEqual([...TUNNEL_REFUSAL_STATUSES].sort())
    for (const status of TUNNEL_REFUSAL_STATUSES) expect(socksReplyFor(status as Outcome), status).toBe(readme[status])
  })

  it('maps to HTTP statuses', () => {
    expect(httpStatusFor(TunnelStatus.POLICY_DENIED)[0]).toBe(403)
    expect(httpStatusFor(TunnelStatus.DNS_FAILED)[0]).toBe(502)
    expect(httpStatusFor(TunnelStatus.CONNECT_REFUSED)[0]).toBe(502)
    expect(httpStatusFor(TunnelStatus.TIMEOUT)[0]).toBe(504)
    expect(httpStatusFor(NO_ANSWER)).toEqual([504, 'Gateway Timeout'])
    expect(httpStatusFor(TunnelStatus.RATE_LIMITED)[0]).toBe(429)
    expect(httpStatusFor(TunnelStatus.INSUFFICIENT_CREDIT)[0]).toBe(402)
    expect(httpStatusFor(TunnelStatus.BAD_REQUEST)[0]).toBe(400)
    for (const s of [TunnelStatus.BUSY, TunnelStatus.QUOTA_EXCEEDED, TunnelStatus.OUTSIDE_SCHEDULE, NO_EXIT] as const) expect(httpStatusFor(s)[0]).toBe(503)
  })
})
