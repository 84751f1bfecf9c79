/**
 * A scenario's report: markdown for people (what ran, the figures, each
 * verdict) and JSON for tools, written to simulations/reports/.
 */

import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { RunResult } from './scenario.ts'

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

/** The figures a report gives, from the records. */
export function figures (result: RunResult): Record<string, number | string> {
  const { outcome } = result
  const attempts = outcome.records.flatMap(r => r.attempts)
  const ok = attempts.filter(a => a.ok)
  const ms = ok.map(a => a.ms).sort((a, b) => a - b)
  const setup = ok.flatMap(a => a.setupMs ?? []).sort((a, b) => a - b)
  // each consumer's first request for a region: DHT discovery, ad checks, dial, tunnel
  const firstSetup = firstPerRegion(result).sort((a, b) => a - b)
  const bytes = ok.reduce((n, a) => n + a.bytes, 0)
  const observer = outcome.views.get('observer')
  const failures = new Map<string, number>()
  for (const a of attempts) {
    if (a.ok) continue
    const why = a.refusal ?? (a.error ?? 'unknown').split(':')[0]
    failures.set(why, (failures.get(why) ?? 0) + 1)
  }
  return {
    nodes: outcome.views.size,
    requests: outcome.records.length,
    attempts: attempts.length,
    'failed attempts': [...failures].map(([k, v]) => `${k} ${v}`).join(', ') || 'none',
    'bytes delivered (MiB)': +(bytes / 2 ** 20).toFixed(1),
    'tunnel set-up p50 (ms)': +percentile(setup, 50).toFixed(1),
    'tunnel set-up p99 (ms)': +percentile(setup, 99).toFixed(1),
    'first request for a region, set-up p50 (ms)': +percentile(firstSetup, 50).toFixed(1),
    'first request for a region, set-up p99 (ms)': +percentile(firstSetup, 99).toFixed(1),
    'request time p50 (ms)': +percentile(ms, 50).toFixed(1),
    'request time p99 (ms)': +percentile(ms, 99).toFixed(1),
    'receipts at the observer': observer?.receipts ?? 0,
    'run time (s)': +(outcome.durationMs / 1000).toFixed(1)
  }
}

/** Set-up times of each consumer's first successful tunnel per region (records come in completion order: sorted by start here). */
function firstPerRegion (result: RunResult): number[] {
  const seen = new Set<string>()
  const out: number[] = []
  const records = [...result.outcome.records].sort((a, b) => a.startedAt - b.startedAt)
  for (const r of records) {
    const key = `${r.consumer}/${r.region}`
    if (seen.has(key)) continue
    const a = r.attempts.find(x => x.ok && x.setupMs != null)
    if (a == null) continue
    seen.add(key)
    out.push(a.setupMs!)
  }
  return out
}

export function markdown (result: RunResult): string {
  const { outcome, verdicts } = result
  const s = outcome.scenario
  const lines = [
    `# ${s.name}`,
    '',
    s.description,
    '',
    `Network: ${s.network.regions.length} region(s) (${s.network.regions.join(', ')}), ${s.network.exitsPerRegion} exit(s) each, ${s.network.consumers} consumer(s), one observer; ` +
      `${s.demand.requestsPerConsumer} requests per consumer, ${s.demand.concurrency} at a time, up to ${s.demand.attempts} attempt(s) each; seed ${s.seed}.`,
    ...(outcome.churned.length > 0 ? ['', ...outcome.churned.map(c => `- after request ${c.atRequest}: stopped ${c.stopped.join(', ')}`)] : []),
    '',
    '| figure | value |',
    '|---|---|',
    ...Object.entries(figures(result)).map(([k, v]) => `| ${k} | ${v} |`),
    '',
    '| exit | tunnels | MiB delivered | left early |',
    '|---|---|---|---|',
    ...outcome.exits.map(e => `| ${e.name} | ${e.tunnels} | ${(e.bytes / 2 ** 20).toFixed(1)} | ${e.stoppedEarly ? 'yes' : ''} |`),
    '',
    '| check | verdict | detail |',
    '|---|---|---|',
    ...verdicts.map(v => `| ${v.name} | ${v.ok ? 'holds' : '**FAILS**'} | ${v.detail} |`),
    ''
  ]
  return lines.join('\n')
}

export async function writeReport (dir: string, result: RunResult): Promise<string[]> {
  await mkdir(dir, { recursive: true })
  const name = result.outcome.scenario.name
  const md = join(dir, `${name}.md`)
  const json = join(dir, `${name}.json`)
  await writeFile(md, markdown(result))
  await writeFile(json, JSON.stringify({
    scenario: name,
    ok: result.ok,
    figures: figures(result),
    exits: result.outcome.exits,
    verdicts: result.verdicts
  }, null, 2) + '\n')
  return [md, json]
}
