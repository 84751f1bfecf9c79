import { describe, it, expect } from 'vitest'
import { StickySessions } from '../../src/relay/exit-selector.ts'

describe('sticky sessions', () => {
  const req = (sessionId: string, region = 'de'): { region: string, sessionId: string } => ({ region, sessionId })

  it('keeps a session on its exit, per region, and lets go of it when the exit fails (not when it is only rate limited)', () => {
    const s = new StickySessions()
    s.record(req('a'), 'E1', true)
    expect(s.get(req('a'))).toBe('E1')
    expect(s.get(req('a', 'us'))).toBeUndefined()
    s.record(req('a'), 'E1', false, 'RATE_LIMITED')
    expect(s.get(req('a'))).toBe('E1')
    s.record(req('a'), 'E1', false, 'BUSY')
    expect(s.get(req('a'))).toBeUndefined()
  })

  it('when full, drops the session used least recently, not the one bound first', () => {
    const s = new StickySessions(3)
    s.record(req('long-lived'), 'E1', true)
    s.record(req('one-off-1'), 'E2', true)
    s.record(req('one-off-2'), 'E3', true)
    // the long-lived session is used again...
    expect(s.get(req('long-lived'))).toBe('E1')
    // ...so a new one-off session pushes out the oldest one-off, not it
    s.record(req('one-off-3'), 'E4', true)
    expect(s.size).toBe(3)
    expect(s.get(req('long-lived'))).toBe('E1')
    expect(s.get(req('one-off-1'))).toBeUndefined()
    // a flood of per-request ids never evicts a session in use between them
    for (let i = 0; i < 100; i++) {
      s.record(req(`flood-${i}`), 'E5', true)
      expect(s.get(req('long-lived'))).toBe('E1')
    }
    expect(s.size).toBe(3)
  })
})
