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

  it('says what byte counts and rates mean beside the raw number', () => {
    const text = formatKeyValues({ exit: { bytesOut: 3_456_789_012, bytesIn: 999, quota: { dayBytes: 12_345_678 }, limits: { downloadBytesPerSecond: 1_250_000, uploadBytesPerSecond: 0 } }, tunnelsOpen: 5000 })
    expect(text).toBe(
      'exit.bytesOut                       3456789012 (3.46 GB)\n' +
      'exit.bytesIn                        999\n' +
      'exit.quota.dayBytes                 12345678 (12.3 MB)\n' +
      'exit.limits.downloadBytesPerSecond  1250000 (10 Mbit/s)\n' +
      'exit.limits.uploadBytesPerSecond    0\n' +
      'tunnelsOpen                         5000\n')
  })
})
