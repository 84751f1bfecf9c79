import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { warningChanges, warningName, watchWarnings } from '../../src/cli/warning-log.ts'
import type { WarningChanges } from '../../src/cli/warning-log.ts'

describe('the start log\'s warnings over a run', () => {
  it('reports each warning once when it appears and once when it is over', () => {
    const shown = new Map([['a', 'a']])
    expect(warningChanges(shown, ['a'])).toEqual({ appeared: [], cleared: [] })
    expect(warningChanges(shown, ['a', 'b', 'b'])).toEqual({ appeared: ['b'], cleared: [] })
    expect(warningChanges(shown, ['b'])).toEqual({ appeared: [], cleared: ['a'] })
    expect(warningChanges(shown, [])).toEqual({ appeared: [], cleared: ['b'] })
    expect(warningChanges(shown, ['a'])).toEqual({ appeared: ['a'], cleared: [] })
  })

  it('knows a warning by its name, before the first colon: figures that change after it are no new warning', () => {
    const shown = new Map<string, string>()
    expect(warningChanges(shown, ['out of credit: balance -0.1'])).toEqual({ appeared: ['out of credit: balance -0.1'], cleared: [] })
    expect(warningChanges(shown, ['out of credit: balance -0.2'])).toEqual({ appeared: [], cleared: [] })
    expect(warningChanges(shown, [])).toEqual({ appeared: [], cleared: ['out of credit'] })
    expect(warningName('no colon here')).toBe('no colon here')
    // a time in the name is part of it: its colons are not the name's end
    expect(warningName('the exit is paused since 2026-11-27T04:25:00.000Z: it takes no new tunnels')).toBe('the exit is paused since 2026-11-27T04:25:00.000Z')
    expect(warningName('ends in a colon:')).toBe('ends in a colon')
  })

  it('reads the node on a timer, from what start already logged, and stops', async () => {
    let now: string[] = ['at start']
    const reports: WarningChanges[] = []
    const { stop } = watchWarnings(() => now, ['at start'], c => reports.push(c), 20)
    await sleep(70)
    expect(reports).toEqual([])
    now = ['at start', 'out of credit']
    await sleep(70)
    now = ['out of credit']
    await sleep(70)
    expect(reports).toEqual([{ appeared: ['out of credit'], cleared: [] }, { appeared: [], cleared: ['at start'] }])
    stop()
    now = []
    await sleep(70)
    expect(reports).toHaveLength(2)
  })

  it('goes on past a reading that throws (a node stopping under it)', async () => {
    let calls = 0
    const reports: WarningChanges[] = []
    const { stop } = watchWarnings(() => { if (++calls === 1) throw new Error('stopping'); return ['w'] }, [], c => reports.push(c), 20)
    await sleep(70)
    stop()
    expect(reports).toEqual([{ appeared: ['w'], cleared: [] }])
  })

  it('reads the node at once on check(), between the timer\'s readings', () => {
    let now: string[] = []
    const reports: WarningChanges[] = []
    // a timer that never fires within the test: only check() can report
    const { check, stop } = watchWarnings(() => now, [], c => reports.push(c), 3_600_000)
    check()
    expect(reports).toEqual([])
    now = ['the exit\'s daily data quota is used up: 1.0 MB of 1.0 MB']
    check()
    expect(reports).toEqual([{ appeared: [now[0]], cleared: [] }])
    now = []
    check()
    expect(reports[1]).toEqual({ appeared: [], cleared: ['the exit\'s daily data quota is used up'] })
    stop()
  })
})
