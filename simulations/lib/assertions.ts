/**
 * The properties a simulation checks, as pure functions of what it
 * recorded (requests, ledger views, exit counters), so each can be tested
 * on made-up records that break it. Each returns a verdict with the figure
 * it judged, for the report.
 */

import type { RequestRecord } from './demand.ts'
import type { LedgerView } from './ledger-view.ts'

export interface Verdict {
  name: string
  ok: boolean
  /** One line: the figure and the bound it was held to. */
  detail: string
  /** Nothing to judge (no spending in that ledger): not ok, but no evidence against either. */
  vacuous?: boolean
}

/** Every request brought back its object byte for byte, within its attempts. */
export function delivery (records: RequestRecord[], options: { minShare?: number } = {}): Verdict {
  const minShare = options.minShare ?? 1
  const delivered = records.filter(r => r.delivered).length
  const share = records.length === 0 ? 0 : delivered / records.length
  const firstTry = records.filter(r => r.attempts[0]?.ok === true).length
  const retried = records.filter(r => r.attempts.length > 1 && r.delivered).length
  return {
    name: 'delivery',
    ok: records.length > 0 && share >= minShare,
    detail: `${delivered} of ${records.length} requests delivered byte for byte (${pct(share)}, at least ${pct(minShare)} asked); ${firstTry} at the first attempt, ${retried} after a retry`
  }
}

/**
 * No one mints credit, in the view of one ledger: every receipt's cost is
 * charged to its consumer and either paid to its exit or owed to it
 * (Σ earned + Σ unpaid = Σ spent, exactly), no one is owed a negative
 * amount, so what all peers hold together never exceeds the allowances
 * (Σ balance ≤ Σ allowance; with the first two this follows, and is shown
 * as the figure that matters). It checks the ledgers' arithmetic across
 * own and gossiped receipts, after churn and debts; it does not judge
 * whether a receipt's traffic was real (two keys of one owner may sign
 * each other receipts: the ledger caps what the exit earns at what the
 * consumer's balance pays, see test/accounting).
 */
export function noMinting (view: LedgerView): Verdict {
  let earned = 0n
  let unpaid = 0n
  let spent = 0n
  let balance = 0n
  let allowance = 0n
  for (const p of view.peers) {
    earned += p.earnedMicro
    unpaid += p.unpaidMicro
    spent += p.spentMicro
    balance += p.balanceMicro
    allowance += p.allowanceMicro
  }
  const conserved = earned + unpaid === spent && view.peers.every(p => p.unpaidMicro >= 0n)
  const bounded = balance <= allowance
  return {
    name: `no minting (${view.holder}'s ledger)`,
    ok: conserved && bounded && spent > 0n,
    vacuous: spent === 0n,
    detail: `Σ spent ${spent} µcredits = Σ earned ${earned} + Σ unpaid ${unpaid}${conserved ? '' : ' (NOT EQUAL)'}; Σ balance ${balance} ${bounded ? '≤' : '>'} Σ allowance ${allowance}` +
      (spent > 0n ? '' : '; nothing was spent, so nothing was checked')
  }
}

/**
 * The rest of the network learns who paid whom: the observer, which took
 * no part, holds receipts for at least `minShare` of what the consumers'
 * own ledgers say they spent.
 */
export function gossipCoverage (observer: LedgerView, consumers: LedgerView[], options: { minShare?: number } = {}): Verdict {
  const minShare = options.minShare ?? 0.95
  let own = 0n
  let seen = 0n
  for (const c of consumers) {
    const self = c.peers.find(p => p.name === c.holder)
    const there = observer.peers.find(p => p.name === c.holder)
    own += self?.spentMicro ?? 0n
    seen += there?.spentMicro ?? 0n
  }
  const share = own === 0n ? 0 : Number(seen * 10_000n / own) / 10_000
  return {
    name: 'gossip coverage',
    ok: own > 0n && share >= minShare,
    detail: `the observer saw ${seen} of the ${own} µcredits the consumers spent by their own ledgers (${pct(share)}, at least ${pct(minShare)} asked)`
  }
}

/**
 * Jain's fairness index of the tunnels each exit of a region served,
 * (Σx)² / (n·Σx²): 1 when all served the same, 1/n when one served all.
 * Exits that stopped during the run are left out.
 */
export function jainIndex (counts: number[]): number {
  const sum = counts.reduce((a, b) => a + b, 0)
  const squares = counts.reduce((a, b) => a + b * b, 0)
  return squares === 0 ? 1 : (sum * sum) / (counts.length * squares)
}

/**
 * Load spreads over a region's exits: every exit that stayed up served at
 * least one tunnel (exploration reaches it), and the region's Jain index
 * is at least `minIndex`.
 */
export function spread (tunnelsByRegion: Map<string, Array<{ name: string, tunnels: number }>>, options: { minIndex?: number } = {}): Verdict {
  const minIndex = options.minIndex ?? 0
  const parts: string[] = []
  let ok = tunnelsByRegion.size > 0
  for (const [region, exits] of tunnelsByRegion) {
    const index = jainIndex(exits.map(e => e.tunnels))
    const idle = exits.filter(e => e.tunnels === 0).map(e => e.name)
    if (idle.length > 0 || index < minIndex) ok = false
    parts.push(`${region} ${exits.map(e => e.tunnels).join('/')} (Jain ${index.toFixed(2)}${idle.length > 0 ? `; idle: ${idle.join(', ')}` : ''})`)
  }
  return { name: 'spread over exits', ok, detail: `tunnels per exit: ${parts.join('; ')}; every exit used and Jain index at least ${minIndex} asked` }
}

/**
 * A consumer that supplies nothing gets no more than its allowance buys,
 * plus the credit an exit risks by design: per exit it used, the unsigned
 * threshold and one receipt interval, and what was in flight when it ran
 * out. `bytesDelivered` is what its requests brought back.
 */
export function noFreeRiding (bytesDelivered: number, bound: { allowanceBytes: number, slackBytes: number, allowanceText?: string }, refusals: number): Verdict {
  const limit = bound.allowanceBytes + bound.slackBytes
  return {
    name: 'no free riding',
    ok: bytesDelivered <= limit && refusals > 0,
    detail: `the free rider got ${mib(bytesDelivered)} MiB; its allowance buys ${bound.allowanceText ?? `${mib(bound.allowanceBytes)} MiB`}, plus ${mib(bound.slackBytes)} MiB of credit at risk by design; ${refusals} attempts refused for credit`
  }
}

function pct (x: number): string {
  return `${(x * 100).toFixed(1)} %`
}

function mib (bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1)
}
