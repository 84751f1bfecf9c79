import { describe, it, expect } from 'vitest'
import { formatKeyValues } from '../../src/cli/output.ts'

describe('formatKeyValues', () => {
  it('dots nested keys, aligns values, and shows time stamps in ms since the epoch as dates', () => {
    const text = formatKeyValues({ peerId: 'p', routing: { lastPublishedAt: Date.UTC(2026, 10, 27, 1, 2, 3), published: 3 }, expiresAt: undefined, list: [] })
    expect(text).toBe(
      'peerId                   p\n' +
      'routing.lastPublishedAt  2026-11-27T01:02:03.000Z\n' +
      'routing.published        3\n' +
      'expiresAt                -\n' +
      'list                     -\n')
    // a count that happens to end in "At" stays a number below any plausible date
    expect(formatKeyValues({ seenAt: 42 })).toBe('seenAt  42\n')
  })

  it('lists an array of objects (the relays) one per line as their fields, not "[object Object]"', () => {
    const text = formatKeyValues({ relays: [{ addr: '/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWA', connected: true, reserved: false }, { addr: '/dns4/r.example/tcp/4001', connected: false, reserved: null }], warnings: ['a', 'b'] })
    expect(text).toBe(
      'relays    addr=/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWA connected=true reserved=false\n' +
      '          addr=/dns4/r.example/tcp/4001 connected=false reserved=-\n' +
      'warnings  a\n' +
      '          b\n')
  })
})
