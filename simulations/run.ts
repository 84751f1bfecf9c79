/**
 * Runs simulations and writes their reports to simulations/reports/:
 *
 *   npm run simulate                 every scenario
 *   npm run simulate -- market churn the named ones
 *   npm run simulate -- --scale 0.2  fewer requests (same network)
 *
 * Exits 1 if any check fails, 2 on a usage error.
 */

import { fileURLToPath } from 'node:url'
import { dirname, join, relative } from 'node:path'
import { parseArgs } from 'node:util'
import { SCENARIOS } from './scenarios.ts'
import { runScenario } from './lib/scenario.ts'
import { writeReport } from './lib/report.ts'

// dist/simulations/run.js and simulations/run.ts both write to the source tree's reports/
const here = dirname(fileURLToPath(import.meta.url))
const REPORTS = here.includes(`${'/'}dist${'/'}`) ? join(here, '..', '..', 'simulations', 'reports') : join(here, 'reports')

function usage (message: string): never {
  console.error(`simulate: ${message}\nusage: npm run simulate -- [--scale N] [${Object.keys(SCENARIOS).join('|')} ...]`)
  process.exit(2)
}

let parsed
try {
  parsed = parseArgs({ allowPositionals: true, options: { scale: { type: 'string', default: '1' } } })
} catch (err: any) {
  usage(err.message)
}
const scale = Number(parsed.values.scale)
if (!Number.isFinite(scale) || scale <= 0) usage(`--scale must be a positive number, not "${parsed.values.scale}"`)
const names = parsed.positionals.length > 0 ? parsed.positionals : Object.keys(SCENARIOS)
for (const n of names) if (SCENARIOS[n] == null) usage(`no scenario "${n}"`)

let failed = 0
for (const name of names) {
  const scenario = SCENARIOS[name](scale)
  console.log(`${name}: ${scenario.description}`)
  const result = await runScenario(scenario, line => console.log(`${name}  ${line}`))
  for (const v of result.verdicts) console.log(`${name}  [${v.ok ? 'holds' : 'FAILS'}] ${v.name}: ${v.detail}`)
  const files = await writeReport(REPORTS, result)
  console.log(`${name}  report: ${files.map(f => relative(process.cwd(), f)).join(', ')}`)
  if (!result.ok) failed++
}
console.log(failed === 0 ? `${names.length} simulation(s): every check holds` : `${failed} of ${names.length} simulation(s) have failing checks`)
process.exit(failed === 0 ? 0 : 1)
