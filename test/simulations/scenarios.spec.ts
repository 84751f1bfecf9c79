/**
 * The simulations of simulations/, small (fewer requests, the same
 * networks): real nodes in this process on loopback, real bytes hashed,
 * real ledgers read after the run. And one run that must fail: exits that
 * extend unlimited credit let the free rider have everything. (In the unit
 * project: no child process and no dist/, so it runs beside other files
 * rather than in the e2e files' one-at-a-time queue.)
 */

import { describe, expect, it } from 'vitest'
import { SCENARIOS, freeRiderBound } from '../../simulations/scenarios.ts'
import { runScenario } from '../../simulations/lib/scenario.ts'
import { markdown } from '../../simulations/lib/report.ts'
import type { RunResult } from '../../simulations/lib/scenario.ts'

const SMALL = 0.01

function failing (result: RunResult): string {
  return result.verdicts.filter(v => !v.ok).map(v => `${v.name}: ${v.detail}`).join('\n')
}

describe('simulations', () => {
  it('market: every object back byte for byte through nine exits, credit conserved, receipts gossiped', async () => {
    const result = await runScenario(SCENARIOS.market(SMALL))
    // how 24 requests spread over nine exits is chance (a region may get five, all to its best-scored exit):
    // the full run (npm run simulate, 180 requests) checks the spread; here it is only reported
    expect(failing({ ...result, verdicts: result.verdicts.filter(v => v.name !== 'spread over exits') })).toBe('')
    expect(result.verdicts.map(v => v.name)).toContain('spread over exits')
    expect(result.outcome.records.length).toBe(3 * 8)
    expect(result.outcome.records.every(r => r.delivered)).toBe(true)
    expect(result.outcome.exits.reduce((n, e) => n + e.tunnels, 0)).toBeGreaterThanOrEqual(24)
    expect(markdown(result)).toContain('| delivery | holds |')
  }, 180_000)

  it('churn: a third of the exits leave mid-run and every request is still delivered', async () => {
    const result = await runScenario(SCENARIOS.churn(SMALL))
    expect(failing(result)).toBe('')
    expect(result.outcome.churned.map(c => c.stopped.length)).toEqual([3, 1])
    const stopped = result.outcome.exits.filter(e => e.stoppedEarly).map(e => e.name).sort()
    expect(stopped).toEqual(['exit-de-0', 'exit-de-1', 'exit-jp-0', 'exit-us-0'])
  }, 180_000)

  it('free rider: cut off near its allowance; with unlimited credit at the exits the same check fails', async () => {
    const fair = await runScenario(SCENARIOS['free-rider'](SMALL))
    expect(failing(fair)).toBe('')
    const lax = SCENARIOS['free-rider'](SMALL)
    lax.network = { ...lax.network, accounting: { ...lax.network.accounting, credit_limit: -1000 } }
    const result = await runScenario(lax)
    const verdict = result.verdicts.find(v => v.name === 'no free riding')!
    expect(verdict.ok).toBe(false)
    // it failed on the bytes: the free rider got more than the bound allows
    const got = result.outcome.records.flatMap(r => r.attempts).filter(a => a.ok).reduce((n, a) => n + a.bytes, 0)
    const bound = freeRiderBound()
    expect(got).toBeGreaterThan(bound.allowanceBytes + bound.slackBytes)
    // credit is still conserved: the exits are owed what they carried
    expect(result.verdicts.find(v => v.name === 'no minting (observer\'s ledger)')?.ok).toBe(true)
  }, 240_000)
})
