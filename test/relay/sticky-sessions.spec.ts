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

  it('keeps a session on its exit through the target\'s failures (refused, no such name, unreachable, timing out, policy)', () => {
    const s = new StickySessions()
    s.record(req('a'), 'E1', true)
    for (const status of ['CONNECT_REFUSED', 'DNS_FAILED', 'UNREACHABLE', 'TIMEOUT', 'POLICY_DENIED', 'BAD_REQUEST']) {
      s.record(req('a'), 'E1', false, status)
      expect(s.get(req('a'))).toBe('E1')
    }
    // the exit's own failures still let go of it: no answer in time, or busy
    s.record(req('a'), 'E1', false, 'NO_ANSWER')
    expect(s.get(req('a'))).toBeUndefined()
    s.record(req('a'), 'E1', true)
    s.record(req('a'), 'E1', false, 'BUSY')
    expect(s.get(req('a'))).toBeUndefined()
  })

  it('binds a new session to its first pick at once, so its requests that come together share one exit', () => {
    const s = new StickySessions()
    const id = (x: string): string => x
    // two requests of a new session, ranked before either tunnel is up, each with another exit first
    expect(s.arrange(req('b'), ['E1', 'E2'], id)).toEqual(['E1', 'E2'])
    expect(s.arrange(req('b'), ['E2', 'E1'], id)).toEqual(['E1', 'E2'])
    // whichever answers last does not take the session elsewhere
    s.record(req('b'), 'E1', true)
    s.record(req('b'), 'E2', true)
    expect(s.get(req('b'))).toBe('E1')
    // its exit gone from the candidates (it left the region's list): the session goes to the best there is, and stays
    expect(s.arrange(req('b'), ['E3', 'E2'], id)).toEqual(['E3', 'E2'])
    expect(s.arrange(req('b'), ['E2', 'E3'], id)).toEqual(['E3', 'E2'])
    // its exit failing: the request that saw it fail moves on and binds the session where it got through
    s.record(req('b'), 'E3', false, 'BUSY')
    s.record(req('b'), 'E2', true)
    expect(s.arrange(req('b'), ['E3', 'E2'], id)).toEqual(['E2', 'E3'])
    // no session, no binding
    expect(s.arrange({ region: 'de' }, ['E3', 'E2'], id)).toEqual(['E3', 'E2'])
    expect(s.size).toBe(1)
  })
})
