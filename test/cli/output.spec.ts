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
})
