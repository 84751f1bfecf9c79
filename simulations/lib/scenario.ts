/**
 * A scenario is data: the network, the objects, the demand, when which
 * nodes leave (churn), and the checks. runScenario() builds the network,
 * drives it, stops it (consumers first, so their last receipts are signed
 * and gossiped), reads every ledger and judges.
 */

import { setTimeout as sleep } from 'node:timers/promises'
import { startOrigin } from './origin.ts'
import { SimNetwork, until } from './network.ts'
import { runDemand } from './demand.ts'
import { readLedgerView } from './ledger-view.ts'
import type { NetworkSpec, SimNode } from './network.ts'
import type { DemandSpec, RequestRecord } from './demand.ts'
import type { LedgerView } from './ledger-view.ts'
import type { Verdict } from './assertions.ts'

export interface ChurnEvent {
  /** When: once this share (0..1) of all requests is done. */
  atShare: number
  /** Names of the nodes stopped then (`exit-de-0`). */
  stop: string[]
}

export interface Scenario {
  name: string
  /** What it shows, for the report. */
  description: string
  seed: number
  network: NetworkSpec
  /** Sizes in bytes of the origin's objects. */
  objects: number[]
  demand: DemandSpec
  churn?: ChurnEvent[]
  /** The verdicts, from what was recorded. */
  checks: (outcome: Outcome) => Verdict[]
}

export interface ExitUse {
  name: string
  region: string
  /** Tunnels that opened through it (attempts that named it). */
  tunnels: number
  /** Body bytes of delivered answers through it. */
  bytes: number
  stoppedEarly: boolean
}

export interface Outcome {
  scenario: Scenario
  records: RequestRecord[]
  exits: ExitUse[]
  /** Every node's ledger, read after the network stopped, by holder name. */
  views: Map<string, LedgerView>
  churned: Array<{ atRequest: number, stopped: string[] }>
  durationMs: number
}

export interface RunResult {
  outcome: Outcome
  verdicts: Verdict[]
  ok: boolean
}

export async function runScenario (scenario: Scenario, log: (line: string) => void = () => {}): Promise<RunResult> {
  const origin = await startOrigin(scenario.objects)
  let net: SimNetwork | undefined
  try {
    const started = performance.now()
    net = await SimNetwork.start(scenario.network, origin.port, log)
    const running = net
    const pending = [...(scenario.churn ?? [])].sort((a, b) => a.atShare - b.atShare)
    const churned: Outcome['churned'] = []
    const stopping: Array<Promise<void>> = []
    const records = await runDemand(running, origin.objects, scenario.demand, scenario.seed, async (done, total) => {
      while (pending.length > 0 && done >= pending[0].atShare * total) {
        const event = pending.shift()!
        const nodes = event.stop.map(name => {
          const n = running.nodes.find(m => m.name === name)
          if (n == null) throw new Error(`scenario ${scenario.name}: churn names "${name}", which is not a node`)
          return n
        })
        // the driver goes on while the nodes go down, as it would; the run waits for them before it reads their ledgers
        for (const n of nodes) {
          stopping.push(running.stopNode(n).catch(err => log(`${n.name} did not stop cleanly: ${err.message}`)))
        }
        churned.push({ atRequest: done, stopped: event.stop })
        log(`request ${done} of ${total}: stopped ${event.stop.join(', ')}`)
      }
    })
    log(`${records.length} requests done in ${Math.round(performance.now() - started)} ms`)
    await Promise.all(stopping)
    await endSessions(running)
    await settleGossip(running.observer)
    await running.stop()
    const views = new Map<string, LedgerView>()
    for (const n of running.nodes) views.set(n.name, await readLedgerView(running, n))
    const outcome: Outcome = { scenario, records, exits: exitUse(running, records), views, churned, durationMs: performance.now() - started }
    const verdicts = scenario.checks(outcome)
    return { outcome, verdicts, ok: verdicts.every(v => v.ok) }
  } finally {
    await net?.stop()
    await net?.remove()
    await origin.close()
  }
}

/** Ends every consumer's sessions: their final receipts go to the exits, which countersign and publish them. */
async function endSessions (net: SimNetwork): Promise<void> {
  for (const c of net.consumers) await c.node.stop()
}

/** Waits until `observer` has taken in no new receipt for two seconds (at most 30 s). */
export async function settleGossip (observer: SimNode): Promise<void> {
  const accepted = (): number => observer.node.status().accounting?.gossip.accepted ?? 0
  let last = -1
  let quietSince = Date.now()
  await until(async () => {
    const now = accepted()
    if (now !== last) {
      last = now
      quietSince = Date.now()
    }
    return Date.now() - quietSince >= 2000
  }, 30_000, 'the receipt gossip to settle').catch(() => {})
  await sleep(100)
}

function exitUse (net: SimNetwork, records: RequestRecord[]): ExitUse[] {
  return net.exits.map(e => {
    const id = e.node.peerId.toString()
    let tunnels = 0
    let bytes = 0
    for (const r of records) {
      for (const a of r.attempts) {
        if (a.exit !== id) continue
        tunnels++
        if (a.ok) bytes += a.bytes
      }
    }
    return { name: e.name, region: e.region!, tunnels, bytes, stoppedEarly: e.stopped }
  })
}

/** Tunnels per exit of each region, leaving out exits the scenario stopped. */
export function tunnelsByRegion (exits: ExitUse[]): Map<string, Array<{ name: string, tunnels: number }>> {
  const byRegion = new Map<string, Array<{ name: string, tunnels: number }>>()
  for (const e of exits) {
    if (e.stoppedEarly) continue
    const list = byRegion.get(e.region) ?? []
    list.push({ name: e.name, tunnels: e.tunnels })
    byRegion.set(e.region, list)
  }
  return byRegion
}
