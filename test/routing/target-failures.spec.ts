import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { MIN_ATTEMPTS, TARGET_FAILURE_HALF_LIFE_MS, TargetFailureJudge } from '../../src/routing/target-failures.ts'
import { MAX_TRACKED_EXITS } from '../../src/routing/constants.ts'
import { RoutingSelector } from '../../src/routing/routing-selector.ts'
import type { ExitDiscovery } from '../../src/routing/discovery.ts'
import type { PeerId } from '@libp2p/interface'

/** Attempts through `exits` in turn, every `deadEvery`-th target dead (the same share for each exit). */
function crawl (judge: TargetFailureJudge, exits: string[], rounds: number, deadEvery: number, at = 0): number {
  let counted = 0
  for (let i = 0; i < rounds; i++) {
    for (const e of exits) {
      if (judge.record(e, at + i, i % deadEvery === 0 ? 'DNS_FAILED' : undefined)) counted++
    }
  }
  return counted
}

describe('target failures: whose fault', () => {
  it('dead targets spread over the exits count against none of them', () => {
    const judge = new TargetFailureJudge()
    // a third of the hosts a crawler asks for are dead, whichever exit it goes through
    expect(crawl(judge, ['A', 'B', 'C'], 60, 3)).toBe(0)
    expect(judge.shares('A', 60).own).toBeCloseTo(1 / 3, 1)
  })

  it('an exit whose resolver is broken is found out once its share stands out', () => {
    const judge = new TargetFailureJudge()
    crawl(judge, ['A', 'B'], 20, 4)
    let counted = 0
    for (let i = 0; i < 20; i++) {
      if (judge.record('broken', 100 + i, 'DNS_FAILED')) counted++
      judge.record('A', 100 + i, i % 4 === 0 ? 'DNS_FAILED' : undefined)
    }
    // its first MIN_ATTEMPTS failures are not judged; all later ones count
    expect(counted).toBe(20 - MIN_ATTEMPTS)
    // and the healthy exits' share of dead targets still does not count against them
    expect(judge.record('A', 200, 'DNS_FAILED')).toBe(false)
  })

  it('judges nothing without other exits to compare with', () => {
    const judge = new TargetFailureJudge()
    let counted = 0
    for (let i = 0; i < 30; i++) if (judge.record('only', i, 'CONNECT_REFUSED')) counted++
    expect(counted).toBe(0)
  })

  it('the exit\'s own faults are not target failures, and an exit that mends is judged afresh', () => {
    const judge = new TargetFailureJudge()
    crawl(judge, ['A', 'B'], 20, 1000)
    for (let i = 0; i < 10; i++) judge.record('X', 50 + i, 'UNREACHABLE')
    expect(judge.record('X', 60, 'UNREACHABLE')).toBe(true)
    // BUSY and the like are never the target's: record() does not judge them (the selector counts them)
    expect(judge.record('X', 61, 'BUSY')).toBe(false)
    // hours later its old failures have decayed; it mends, then a dead target is the target's again
    const later = 61 + 10 * TARGET_FAILURE_HALF_LIFE_MS
    crawl(judge, ['A', 'B', 'X'], 20, 1000, later)
    expect(judge.record('X', later + 30, 'DNS_FAILED')).toBe(false)
  })

  it('stays bounded, and forgetting an exit takes its counts out of the total', () => {
    const judge = new TargetFailureJudge()
    for (let i = 0; i < MAX_TRACKED_EXITS + 100; i++) judge.record(`e${i}`, 0, 'DNS_FAILED')
    expect(judge.size).toBe(MAX_TRACKED_EXITS)
    const { others } = judge.shares('fresh', 0)
    expect(others).toBe(1)
  })
})

describe('the routing selector\'s telemetry', () => {
  async function peer (): Promise<PeerId> {
    return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  }

  it('dead targets do not sink the exits that tried them; an exit that fails every target does sink', async () => {
    let t = 1_000_000
    const libp2p = { peerId: await peer(), getConnections: () => [] }
    const selector = new RoutingSelector(libp2p as any, { discovery: {} as unknown as ExitDiscovery, now: () => t })
    const [a, b, broken] = [await peer(), await peer(), await peer()]
    for (let i = 0; i < 30; i++) {
      const dead = i % 3 === 0
      for (const e of [a, b]) selector.report(e, { region: 'de' }, dead ? { ok: false, status: 'DNS_FAILED' } : { ok: true })
      selector.report(broken, { region: 'de' }, { ok: false, status: 'DNS_FAILED' })
      t += 1000
    }
    expect(selector.telemetry.predict(a.toString(), t).failures).toBe(0)
    expect(selector.telemetry.predict(b.toString(), t).failures).toBe(0)
    expect(selector.telemetry.predict(broken.toString(), t).failures).toBeGreaterThan(20)
    // the exit's own faults count at once
    selector.report(a, { region: 'de' }, { ok: false, status: 'BUSY' })
    expect(selector.telemetry.predict(a.toString(), t).failures).toBeGreaterThan(0.9)
  })

  it('a burst past this consumer\'s share of an exit (RATE_LIMITED), or its credit, does not sink the exit', async () => {
    const t = 1_000_000
    const libp2p = { peerId: await peer(), getConnections: () => [] }
    const selector = new RoutingSelector(libp2p as any, { discovery: {} as unknown as ExitDiscovery, now: () => t })
    const [a, b] = [await peer(), await peer()]
    for (let i = 0; i < 200; i++) {
      selector.report(a, { region: 'de' }, { ok: true })
      selector.report(a, { region: 'de' }, { ok: false, status: i % 2 === 0 ? 'RATE_LIMITED' : 'INSUFFICIENT_CREDIT' })
      selector.report(b, { region: 'de' }, { ok: true })
    }
    expect(selector.telemetry.predict(a.toString(), t).failures).toBe(0)
    expect(selector.telemetry.predict(a.toString(), t)).toEqual(selector.telemetry.predict(b.toString(), t))
  })

  it('judges an exit against the other exits of the region asked for: a crawl of one country\'s dead sites sinks none of its exits', async () => {
    let t = 1_000_000
    const libp2p = { peerId: await peer(), getConnections: () => [] }
    const selector = new RoutingSelector(libp2p as any, { discovery: {} as unknown as ExitDiscovery, now: () => t })
    const [jp1, jp2, de1, de2] = [await peer(), await peer(), await peer(), await peer()]
    for (let i = 0; i < 30; i++) {
      // two in three of the jp sites asked for are gone, none of the de ones
      const dead = i % 3 !== 0
      for (const e of [jp1, jp2]) selector.report(e, { region: 'jp' }, dead ? { ok: false, status: 'DNS_FAILED' } : { ok: true })
      for (const e of [de1, de2]) selector.report(e, { region: 'de' }, { ok: true })
      t += 1000
    }
    for (const e of [jp1, jp2, de1, de2]) expect(selector.telemetry.predict(e.toString(), t).failures).toBe(0)
  })
})
