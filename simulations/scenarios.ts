/**
 * The simulations, declared. Each takes a `scale` (1 for the full run of
 * `npm run simulate`; the test suite runs them smaller) that sets the
 * number of requests, not the shape of the network.
 */

import { delivery, gossipCoverage, noFreeRiding, noMinting, spread } from './lib/assertions.ts'
import { tunnelsByRegion } from './lib/scenario.ts'
import type { Outcome, Scenario } from './lib/scenario.ts'
import type { Verdict } from './lib/assertions.ts'

const KiB = 1024
const MiB = 1024 * KiB

/** No minting in every node's ledger, and gossip coverage at the observer. */
function accountingChecks (o: Outcome, coverage = 0.95): Verdict[] {
  const views = [...o.views.values()]
  const consumers = views.filter(v => v.holder.startsWith('consumer-'))
  return [
    noMinting(o.views.get('observer')!),
    allLedgersBalance(views.map(v => noMinting(v))),
    gossipCoverage(o.views.get('observer')!, consumers, { minShare: coverage })
  ]
}

/** Folds the per-ledger no-minting verdicts of nodes that spent or earned into one line. */
function allLedgersBalance (verdicts: Verdict[]): Verdict {
  const judged = verdicts.filter(v => v.vacuous !== true)
  const failed = judged.filter(v => !v.ok)
  return {
    name: 'no minting (every node\'s ledger)',
    ok: judged.length > 0 && failed.length === 0,
    detail: `${judged.length - failed.length} of ${judged.length} ledgers that saw any spending conserve credit and hold no more than the allowances` +
      failed.map(v => `; ${v.name}: ${v.detail}`).join('')
  }
}

/** The market's network and demand, which churn reuses. */
function marketShape (scale: number): Pick<Scenario, 'network' | 'objects' | 'demand'> {
  return {
    network: { regions: ['de', 'us', 'jp'], exitsPerRegion: 3, consumers: 3 },
    objects: [64 * KiB, 256 * KiB, 1 * MiB, 2 * MiB],
    demand: { requestsPerConsumer: Math.max(8, Math.round(60 * scale)), concurrency: 4, attempts: 3, attemptTimeoutMs: 30_000 }
  }
}

export function market (scale = 1): Scenario {
  return {
    name: 'market',
    description: 'Nine exits in three regions and three consumers fetching objects of 64 KiB to 2 MiB through them, four at a time: every answer byte for byte, load over every exit of a region, credit conserved in every ledger, and the receipts known to a node that took no part.',
    seed: 1,
    ...marketShape(scale),
    checks: o => [
      delivery(o.records),
      spread(tunnelsByRegion(o.exits), { minIndex: 0.5 }),
      ...accountingChecks(o)
    ]
  }
}

export function churn (scale = 1): Scenario {
  return {
    name: 'churn',
    description: 'The market, but a third of the exits leave mid-run (one per region at 30 % of the requests, another in de at 60 %): consumers go on through the others, every request is still delivered within three attempts, and credit stays conserved with exits that stopped mid-session.',
    seed: 2,
    ...marketShape(scale),
    churn: [
      { atShare: 0.3, stop: ['exit-de-0', 'exit-us-0', 'exit-jp-0'] },
      { atShare: 0.6, stop: ['exit-de-1'] }
    ],
    checks: o => [delivery(o.records), ...accountingChecks(o)]
  }
}

/** Price per GB at which the default allowance (1 credit) buys 8 MiB. */
const FREE_RIDER_PRICE = 1e9 / (8 * MiB)

const FREE_RIDER_EXITS = 3
const FREE_RIDER_CONCURRENCY = 2

/**
 * What the free rider may get: its allowance, and what each exit lets it
 * spend before the others hear of it (an exit judges it by its own ledger,
 * which hears of what it spent at the others by gossip; its tunnels are
 * spread over the exits, and it ignores its own balance). An exit publishes
 * a consumer's receipts at once when the unpublished spending reaches a
 * tenth of the credit it has left, so each other exit's share is at most a
 * tenth of the allowance. Then per exit a receipt interval (1 MiB: bytes are
 * carried before they are signed), and the requests in flight. The unsigned
 * threshold is not at risk here: an exit lets no more go unsigned than the
 * consumer's credit left pays for, and this consumer signs (one that stops
 * signing is cut off at the threshold: test/accounting/unsigned-threshold).
 */
export function freeRiderBound (): { allowanceBytes: number, slackBytes: number, allowanceText: string } {
  const allowance = 8 * MiB
  return {
    allowanceBytes: allowance + (FREE_RIDER_EXITS - 1) * allowance / 10,
    allowanceText: `8.0 MiB, and a tenth of that at each of the ${FREE_RIDER_EXITS - 1} other exits before they hear of it`,
    slackBytes: FREE_RIDER_EXITS * MiB + FREE_RIDER_CONCURRENCY * MiB
  }
}

export function freeRider (scale = 1): Scenario {
  const exits = FREE_RIDER_EXITS
  const concurrency = FREE_RIDER_CONCURRENCY
  return {
    name: 'free-rider',
    description: 'One consumer that supplies nothing, and ignores its own balance, asks for 64 MiB from three exits whose price makes its allowance worth 8 MiB: the exits cut it off once its balance, as their ledgers see it, is spent; what it got beyond its allowance is bounded by the credit the design puts at risk (what an exit lets it spend before the others hear of it by gossip, published at once as its credit runs low, and per exit a receipt interval).',
    seed: 3,
    network: {
      regions: ['de'],
      exitsPerRegion: exits,
      consumers: 1,
      exit: { price_per_gb: FREE_RIDER_PRICE },
      // a consumer that does not stop at its own balance, as a modified node would not:
      // what this scenario checks is the exits' own cut-off
      consumerAccounting: { stop_at_balance: -1_000_000 }
    },
    objects: [1 * MiB],
    // at any scale it asks for more than its allowance and the credit at risk (14.6 MiB) together, so the bound can fail
    demand: { requestsPerConsumer: Math.max(64, Math.round(64 * scale)), concurrency, attempts: 1, attemptTimeoutMs: 30_000 },
    checks: o => {
      const a = o.records.flatMap(r => r.attempts)
      const got = a.filter(x => x.ok).reduce((n, x) => n + x.bytes, 0)
      const refusals = a.filter(x => x.refusal === 'INSUFFICIENT_CREDIT').length
      return [noFreeRiding(got, freeRiderBound(), refusals), ...accountingChecks(o, 0.9)]
    }
  }
}

export function scale (scale = 1): Scenario {
  return {
    name: 'scale',
    description: 'Thirty exits in six regions and eight consumers (39 nodes, one process), one request at a time each: each consumer\'s first request for a region has to find its exits through the DHT; every answer byte for byte, every exit used, credit conserved, receipts gossiped to all.',
    seed: 4,
    network: { regions: ['de', 'us', 'jp', 'fr', 'gb', 'br'], exitsPerRegion: 5, consumers: 8 },
    // small objects, one at a time: 39 nodes share this process's one thread, and the figures are of finding
    // exits, not of carrying bytes (with four at a time and 1 MiB objects DHT lookups time out: see README)
    objects: [16 * KiB, 256 * KiB],
    demand: { requestsPerConsumer: Math.max(12, Math.round(30 * scale)), concurrency: 1, attempts: 3, attemptTimeoutMs: 60_000 },
    checks: o => [
      delivery(o.records),
      spread(tunnelsByRegion(o.exits), { minIndex: 0.4 }),
      ...accountingChecks(o)
    ]
  }
}

export const SCENARIOS: Record<string, (scale?: number) => Scenario> = { market, churn, 'free-rider': freeRider, scale }
