import { describe, it, expect } from 'vitest'
import { SESSION_PICK_AMONG, StickySessions, firstPick } from '../../src/relay/exit-selector.ts'

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

  it('draws a new session\'s exit among the good ones in proportion to score, the same for the same session', () => {
    const exits = [{ id: 'E1', score: 0.43 }, { id: 'E2', score: 0.40 }, { id: 'E3', score: 0.30 }, { id: 'E4', score: 0.1 }]
    const counts = new Map<string, number>()
    const N = 3000
    for (let i = 0; i < N; i++) {
      const s = new StickySessions()
      const arranged = s.arrange(req(`job-${i}`), [...exits], e => e.id, e => e.score)
      counts.set(arranged[0].id, (counts.get(arranged[0].id) ?? 0) + 1)
      // bound to it: the session's next requests keep it, whatever the ranking says then
      expect(s.arrange(req(`job-${i}`), [...exits].reverse(), e => e.id, e => e.score)[0].id).toBe(arranged[0].id)
      // the rest keep their order behind it
      expect(arranged.slice(1).map(e => e.id)).toEqual(exits.map(e => e.id).filter(id => id !== arranged[0].id))
    }
    // in proportion to 0.43 : 0.40 : 0.30 (E4, under half the best's score, never)
    const share = (id: string): number => (counts.get(id) ?? 0) / N
    expect(share('E1')).toBeGreaterThan(0.33)
    expect(share('E1')).toBeLessThan(0.43)
    expect(share('E2')).toBeGreaterThan(0.30)
    expect(share('E2')).toBeLessThan(0.40)
    expect(share('E3')).toBeGreaterThan(0.21)
    expect(share('E3')).toBeLessThan(0.31)
    expect(counts.get('E4')).toBeUndefined()
    // the same session key draws the same exit; without scores, the best
    expect(firstPick('de/x', exits, e => e.id, e => e.score)).toBe(firstPick('de/x', exits, e => e.id, e => e.score))
    expect(new StickySessions().arrange(req('plain'), [...exits], e => e.id)[0].id).toBe('E1')
    // only the best-ranked are drawn among, and no score at all is the best's
    const many = Array.from({ length: SESSION_PICK_AMONG + 10 }, (_, i) => ({ id: `M${i}`, score: 1 }))
    for (let i = 0; i < 200; i++) expect(firstPick(`k${i}`, many, e => e.id, e => e.score)).toBeLessThan(SESSION_PICK_AMONG)
    expect(firstPick('k', [{ id: 'Z', score: 0 }, { id: 'Y', score: 0 }], e => e.id, e => e.score)).toBe(0)
    // the bar is half the best score in the window, whatever comes first; NaN leaves an exit out
    const uneven = [{ id: 'low', score: 0.2 }, { id: 'high', score: 0.8 }, { id: 'tail', score: 0.15 }]
    for (let i = 0; i < 100; i++) expect(firstPick(`u${i}`, uneven, e => e.id, e => e.score)).toBe(1)
    const withGone = [{ id: 'gone', score: NaN }, { id: 'B', score: 0.5 }, { id: 'C', score: 0.5 }]
    for (let i = 0; i < 100; i++) expect(firstPick(`g${i}`, withGone, e => e.id, e => e.score)).toBeGreaterThan(0)
  })
})
