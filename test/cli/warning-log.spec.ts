import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { warningChanges, watchWarnings } from '../../src/cli/warning-log.ts'
import type { WarningChanges } from '../../src/cli/warning-log.ts'

describe('the start log\'s warnings over a run', () => {
  it('reports each warning once when it appears and once when it is over', () => {
    const shown = new Set(['a'])
    expect(warningChanges(shown, ['a'])).toEqual({ appeared: [], cleared: [] })
    expect(warningChanges(shown, ['a', 'b', 'b'])).toEqual({ appeared: ['b'], cleared: [] })
    expect(warningChanges(shown, ['b'])).toEqual({ appeared: [], cleared: ['a'] })
    expect(warningChanges(shown, [])).toEqual({ appeared: [], cleared: ['b'] })
    expect(warningChanges(shown, ['a'])).toEqual({ appeared: ['a'], cleared: [] })
  })

  it('reads the node on a timer, from what start already logged, and stops', async () => {
    let now: string[] = ['at start']
    const reports: WarningChanges[] = []
    const stop = watchWarnings(() => now, ['at start'], c => reports.push(c), 20)
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
    const stop = watchWarnings(() => { if (++calls === 1) throw new Error('stopping'); return ['w'] }, [], c => reports.push(c), 20)
    await sleep(70)
    stop()
    expect(reports).toEqual([{ appeared: ['w'], cleared: [] }])
  })
})
