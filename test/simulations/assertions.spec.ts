import { describe, expect, it } from 'vitest'
import { delivery, gossipCoverage, jainIndex, noFreeRiding, noMinting, spread } from '../../simulations/lib/assertions.ts'
import { schedule } from '../../simulations/lib/demand.ts'
import type { RequestRecord } from '../../simulations/lib/demand.ts'
import type { LedgerView, PeerPosition } from '../../simulations/lib/ledger-view.ts'

const MiB = 2 ** 20

function record (delivered: boolean[], region = 'de'): RequestRecord {
  return { consumer: 'consumer-0', region, object: 0, startedAt: 0, delivered: delivered.includes(true), attempts: delivered.map(ok => ({ ok, ms: 1, bytes: ok ? 10 : 0 })) }
}

function peer (name: string, p: Partial<PeerPosition>): PeerPosition {
  const base = { earnedMicro: 0n, unpaidMicro: 0n, spentMicro: 0n, allowanceMicro: 0n, bytesCarried: 0n, bytesUsed: 0n, ...p }
  return { name, ...base, balanceMicro: p.balanceMicro ?? base.allowanceMicro + base.earnedMicro - base.spentMicro }
}

function view (holder: string, peers: PeerPosition[]): LedgerView {
  return { holder, receipts: 1, peers }
}

describe('simulation checks', () => {
  it('delivery holds only when every request came back (or the share asked)', () => {
    expect(delivery([record([true]), record([false, true])]).ok).toBe(true)
    expect(delivery([record([true]), record([false, false])]).ok).toBe(false)
    expect(delivery([record([true]), record([false, false])], { minShare: 0.5 }).ok).toBe(true)
    expect(delivery([]).ok).toBe(false)
    expect(delivery([record([true]), record([false, true])]).detail).toContain('1 at the first attempt, 1 after a retry')
  })

  it('no minting: conserved credit holds; credit from nowhere, a lost charge or nothing spent does not', () => {
    const fair = view('observer', [
      peer('consumer-0', { allowanceMicro: 1_000_000n, spentMicro: 300n }),
      peer('exit-de-0', { earnedMicro: 200n, unpaidMicro: 100n })
    ])
    expect(noMinting(fair).ok).toBe(true)
    // an exit credited more than any consumer was charged
    const minted = view('observer', [peer('consumer-0', { allowanceMicro: 1_000_000n, spentMicro: 300n }), peer('exit-de-0', { earnedMicro: 400n })])
    expect(noMinting(minted).ok).toBe(false)
    expect(noMinting(minted).detail).toContain('NOT EQUAL')
    // balances above the allowances, however the totals add up
    const inflated = view('observer', [peer('consumer-0', { allowanceMicro: 10n, spentMicro: 5n, balanceMicro: 50n }), peer('exit-de-0', { earnedMicro: 5n })])
    expect(noMinting(inflated).ok).toBe(false)
    // a negative debt balancing the books is no balance
    const negative = view('observer', [peer('consumer-0', { allowanceMicro: 10n, spentMicro: 5n }), peer('exit-de-0', { earnedMicro: 10n, unpaidMicro: -5n })])
    expect(noMinting(negative).ok).toBe(false)
    const idle = noMinting(view('observer', [peer('consumer-0', { allowanceMicro: 10n })]))
    expect(idle.ok).toBe(false)
    expect(idle.vacuous).toBe(true)
  })

  it('gossip coverage compares the observer\'s view with the consumers\' own', () => {
    const observer = view('observer', [peer('consumer-0', { spentMicro: 90n }), peer('consumer-1', { spentMicro: 0n })])
    const own = [view('consumer-0', [peer('consumer-0', { spentMicro: 100n })]), view('consumer-1', [peer('consumer-1', { spentMicro: 100n })])]
    expect(gossipCoverage(observer, own, { minShare: 0.45 }).ok).toBe(true)
    expect(gossipCoverage(observer, own, { minShare: 0.5 }).ok).toBe(false)
    expect(gossipCoverage(observer, [], {}).ok).toBe(false)
  })

  it('Jain index: 1 for an even spread, 1/n for one exit taking all', () => {
    expect(jainIndex([5, 5, 5])).toBe(1)
    expect(jainIndex([9, 0, 0])).toBeCloseTo(1 / 3)
    expect(jainIndex([4, 5, 7])).toBeCloseTo(256 / (3 * 90))
  })

  it('spread fails when an exit got nothing or one exit took most', () => {
    const even = new Map([['de', [{ name: 'a', tunnels: 4 }, { name: 'b', tunnels: 5 }]]])
    expect(spread(even, { minIndex: 0.5 }).ok).toBe(true)
    const idle = new Map([['de', [{ name: 'a', tunnels: 9 }, { name: 'b', tunnels: 0 }]]])
    expect(spread(idle).ok).toBe(false)
    expect(spread(idle).detail).toContain('idle: b')
    const skewed = new Map([['de', [{ name: 'a', tunnels: 40 }, { name: 'b', tunnels: 1 }, { name: 'c', tunnels: 1 }]]])
    expect(spread(skewed, { minIndex: 0.5 }).ok).toBe(false)
  })

  it('no free riding: within the bound and refused holds; beyond it, or never refused, fails', () => {
    const bound = { allowanceBytes: 8 * MiB, slackBytes: 4 * MiB }
    expect(noFreeRiding(10 * MiB, bound, 3).ok).toBe(true)
    expect(noFreeRiding(13 * MiB, bound, 3).ok).toBe(false)
    expect(noFreeRiding(10 * MiB, bound, 0).ok).toBe(false)
  })

  it('a schedule is the same for the same seed and covers the regions it is given', () => {
    const a = schedule(7, 200, ['de', 'us'], 4)
    expect(schedule(7, 200, ['de', 'us'], 4)).toEqual(a)
    expect(schedule(8, 200, ['de', 'us'], 4)).not.toEqual(a)
    expect(new Set(a.map(r => r.region))).toEqual(new Set(['de', 'us']))
    expect(a.every(r => r.object >= 0 && r.object < 4)).toBe(true)
  })
})
