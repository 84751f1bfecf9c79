import { describe, it, expect } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { RATE_LIMITED_ASK_LATER_MS, RoutingSelector } from '../../src/routing/routing-selector.ts'
import { mulberry32 } from '../../src/routing/random.ts'
import type { ExitDiscovery } from '../../src/routing/discovery.ts'
import type { VerifiedCapacityAd } from '../../src/routing/capacity-ad.ts'
import type { PeerId } from '@libp2p/interface'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function ad (peerId: PeerId, capacityMbps = 100): VerifiedCapacityAd {
  return { peerId, region: 'de', capacityMbps, load: 0, pricePerGbMicro: 1_000_000n, allowedPortsText: '80,443', allowedPorts: [[80, 80], [443, 443]], multiaddrs: [], seq: 1n, expiresAt: Date.now() + 3_600_000 }
}

/** A selector over fixed ads (no DHT), greedy (explore 0), seeded. */
async function selectorOver (ads: VerifiedCapacityAd[]): Promise<RoutingSelector> {
  const discovery = { find: async () => ads, cached: () => ads, ad: () => undefined } as unknown as ExitDiscovery
  return new RoutingSelector({ peerId: await peer(), getConnections: () => [] } as any, { discovery, explore: 0, random: mulberry32(7) })
}

describe('the routing selector and an exit that moved region', () => {
  it('leaves out an exit whose identify, on the connection open now, names another region than its cached ad', async () => {
    const [moved, stayed, unknown] = [await peer(), await peer(), await peer()]
    const ads = [ad(moved), ad(stayed), ad(unknown)]
    const discovery = { find: async () => ads, cached: () => ads, ad: () => undefined } as unknown as ExitDiscovery
    // restarted in fr; still in de (a subdivision of it counts); not connected, so identify says nothing now
    const live = new Map([[moved.toString(), 'fr'], [stayed.toString(), 'de-by']])
    const known = { candidates: async () => [], liveRegion: async (id: PeerId) => live.get(id.toString()) }
    const selector = new RoutingSelector({ peerId: await peer(), getConnections: () => [] } as any, { discovery, known: known as any, explore: 0, random: mulberry32(7) })
    const ids = (await selector.candidates({ region: 'de' })).map(String).sort()
    expect(ids).toEqual([stayed, unknown].map(String).sort())
    // asked for no region, it may carry as any exit
    expect(await selector.candidates({})).toHaveLength(3)
  })

  it('takes an exit for the region its identify names now, though its cached ad names the old one', async () => {
    const moved = await peer()
    const stale = ad(moved)
    const discovery = { find: async () => [], cached: () => [], ad: (id: PeerId) => id.equals(moved) ? stale : undefined } as unknown as ExitDiscovery
    // identify says fr: the known peers for fr are it
    const known = { candidates: async ({ region }: { region?: string }) => region === 'fr' ? [moved] : [], liveRegion: async () => 'fr' }
    const selector = new RoutingSelector({ peerId: await peer(), getConnections: () => [] } as any, { discovery, known: known as any, explore: 0, random: mulberry32(7) })
    expect((await selector.candidates({ region: 'fr' })).map(String)).toEqual([moved.toString()])
    expect(await selector.candidates({ region: 'de' })).toEqual([])
  })
})

describe('the routing selector counts our open tunnels through each exit', () => {
  it('puts the next tunnel of a burst on another equal exit, and the first back once its tunnels close', async () => {
    const [a, b] = [await peer(), await peer()]
    const selector = await selectorOver([ad(a), ad(b)])
    const first = (await selector.candidates({ region: 'de' }))[0]
    const closeFirst = selector.opened(first)
    await new Promise(resolve => setImmediate(resolve))
    const second = (await selector.candidates({ region: 'de' }))[0]
    expect(second.equals(first)).toBe(false)
    const closeSecond = selector.opened(second)
    await new Promise(resolve => setImmediate(resolve))
    expect(selector.openThrough(first)).toBe(1)
    expect(selector.openThrough(second)).toBe(1)
    // both closed: back to the first pick; closing twice counts once
    closeFirst()
    closeFirst()
    closeSecond()
    expect(selector.openThrough(first)).toBe(0)
    expect(selector.openThrough(second)).toBe(0)
  })

  it('breaks ties between exits nobody has measured at random, so consumers do not all start on the same one', async () => {
    const [a, b, c] = [await peer(), await peer(), await peer()]
    const selector = await selectorOver([ad(a), ad(b), ad(c)])
    const firsts = new Map<string, number>()
    for (let i = 0; i < 300; i++) {
      const first = (await selector.candidates({ region: 'de' }))[0].toString()
      firsts.set(first, (firsts.get(first) ?? 0) + 1)
      await new Promise(resolve => setImmediate(resolve))
    }
    // about 100 each; in the order given, a took all 300
    for (const e of [a, b, c]) expect(firsts.get(e.toString()) ?? 0).toBeGreaterThan(60)
  })

  it('spreads requests ranked together, before any has begun its attempt', async () => {
    const [a, b] = [await peer(), await peer()]
    const selector = await selectorOver([ad(a), ad(b)])
    const firsts = (await Promise.all(Array.from({ length: 6 }, async () => selector.candidates({ region: 'de' })))).map(c => c[0].toString())
    expect(firsts.filter(id => id === a.toString())).toHaveLength(3)
    expect(firsts.filter(id => id === b.toString())).toHaveLength(3)
    // a pick counts only until the end of the turn: by then its attempt has begun (opened()) or it never will
    await new Promise(resolve => setImmediate(resolve))
    expect(selector.openThrough(a) + selector.openThrough(b)).toBe(0)
  })

  it('spreads 30 tunnels held open over three exits by what each leaves free', async () => {
    const exits = [await peer(), await peer(), await peer()]
    const selector = await selectorOver([ad(exits[0], 1000), ad(exits[1], 1000), ad(exits[2], 100)])
    for (let i = 0; i < 30; i++) {
      selector.opened((await selector.candidates({ region: 'de' }))[0])
      await new Promise(resolve => setImmediate(resolve))
    }
    const counts = exits.map(e => selector.openThrough(e))
    expect(counts.reduce((x, y) => x + y)).toBe(30)
    // the two big exits share most of them evenly; the small one still gets some
    expect(Math.abs(counts[0] - counts[1])).toBeLessThanOrEqual(1)
    expect(counts[2]).toBeGreaterThan(0)
    expect(counts[2]).toBeLessThan(counts[0])
  })
})

describe('providers, as `spareband providers` lists them', () => {
  it('lists the exits a request would use: those with an ad and those only identify told of, saying which', async () => {
    const [advertised, identified, elsewhere] = [await peer(), await peer(), await peer()]
    const ads = [ad(advertised)]
    let fresh = 0
    const discovery = { find: async (_r: string, o: { fresh?: boolean }) => { if (o.fresh === true) fresh++; return ads }, cached: () => ads, ad: () => undefined } as unknown as ExitDiscovery
    // identify on open connections: one exit in de-by (a part of de), one in fr
    const live = new Map([[identified.toString(), 'de-by'], [elsewhere.toString(), 'fr']])
    const known = {
      candidates: async ({ region }: { region?: string }) => [identified, elsewhere].filter(id => region == null || live.get(id.toString())!.startsWith(region)),
      liveRegion: async (id: PeerId) => live.get(id.toString())
    }
    const selector = new RoutingSelector({ peerId: await peer(), getConnections: () => [] } as any, { discovery, known: known as any, explore: 0, random: mulberry32(7) })
    const rows = await selector.providers('de')
    expect(fresh).toBe(1)
    // the advertised exit ranks first (its ad's figures beat the neutral ones)
    expect(rows.map(r => [r.peerId, r.source, r.region])).toEqual([[advertised.toString(), 'dht', 'de'], [identified.toString(), 'identify', 'de-by']])
    expect(rows[1]).toMatchObject({ expiresAt: null, verified: 'unverifiable', reachability: 'unknown', askedLast: false })
    // an exit the proxy found gone is said to be asked last
    selector.setAskedLast(exit => exit.equals(identified))
    expect((await selector.providers('de')).map(r => [r.peerId, r.askedLast])).toEqual([[advertised.toString(), false], [identified.toString(), true]])
    // the same exits a request for the region chooses from
    expect((await selector.candidates({ region: 'de' })).map(String).sort()).toEqual([advertised, identified].map(String).sort())
  })

  it('answers with the exits identify knows when the DHT lookup fails, and with the lookup\'s error when there are none', async () => {
    const identified = await peer()
    const discovery = { find: async () => { throw new Error('query aborted') }, cached: () => [], ad: () => undefined } as unknown as ExitDiscovery
    let knowIt = true
    const known = { candidates: async () => knowIt ? [identified] : [], liveRegion: async () => 'de' }
    const selector = new RoutingSelector({ peerId: await peer(), getConnections: () => [] } as any, { discovery, known: known as any, explore: 0, random: mulberry32(7) })
    expect((await selector.providers('de')).map(r => [r.peerId, r.source])).toEqual([[identified.toString(), 'identify']])
    knowIt = false
    await expect(selector.providers('de')).rejects.toThrow('query aborted')
  })
})

describe('new sessions through the routing selector', () => {
  it('are drawn among the good exits, never one found gone, and not at all in an exploration round', async () => {
    const [a, b, gone] = [await peer(), await peer(), await peer()]
    const ads = [ad(a), ad(b), ad(gone)]
    const selector = await selectorOver(ads)
    selector.setAskedLast(exit => exit.equals(gone))
    const firsts = new Map<string, number>()
    for (let i = 0; i < 300; i++) {
      const id = (await selector.candidates({ region: 'de', sessionId: `job-${i}` }))[0].toString()
      firsts.set(id, (firsts.get(id) ?? 0) + 1)
      await new Promise(resolve => setImmediate(resolve))
    }
    // equal ads: the two live exits share the sessions, the gone one gets none
    expect(firsts.get(gone.toString())).toBeUndefined()
    expect(firsts.get(a.toString())).toBeGreaterThan(90)
    expect(firsts.get(b.toString())).toBeGreaterThan(90)

    // every round an exploration: its under-explored exit goes first, as a request without a session would
    // get it, however its drawn score compares with the proven one's
    const [proven, fresh] = [await peer(), await peer()]
    const pair = [ad(proven), ad(fresh)]
    const discovery = { find: async () => pair, cached: () => pair, ad: () => undefined } as unknown as ExitDiscovery
    const exploring = new RoutingSelector({ peerId: await peer(), getConnections: () => [] } as any, { discovery, explore: 1, random: mulberry32(11) })
    for (let i = 0; i < 100; i++) exploring.telemetry.recordSuccess(proven.toString(), { at: Date.now(), ttfbMs: 5, bytes: 8 * 1024 * 1024, durationMs: 100 })
    for (let i = 0; i < 50; i++) {
      const ranked = await exploring.rank({ region: 'de', sessionId: `explore-${i}` })
      expect(ranked[0].candidate.peerId).toBe(fresh.toString())
      await new Promise(resolve => setImmediate(resolve))
    }
  })
})

describe('the routing selector and an exit that said RATE_LIMITED to us', () => {
  /** A seeded greedy selector over two equal exits, with a clock of our own. */
  async function twoExits (): Promise<{ selector: RoutingSelector, a: PeerId, b: PeerId, clock: { t: number } }> {
    const [a, b] = [await peer(), await peer()]
    const ads = [ad(a, 1000), ad(b, 10)]
    const discovery = { find: async () => ads, cached: () => ads, ad: () => undefined } as unknown as ExitDiscovery
    const clock = { t: 1_000_000 }
    const selector = new RoutingSelector({ peerId: await peer(), getConnections: () => [] } as any, { discovery, explore: 0, random: mulberry32(7), now: () => clock.t })
    return { selector, a, b, clock }
  }
  const firstFor = async (selector: RoutingSelector, request: { region: string, sessionId?: string } = { region: 'de' }): Promise<string> => {
    const first = (await selector.candidates(request))[0].toString()
    // let this turn's pick count lapse, as between requests
    await new Promise(resolve => setImmediate(resolve))
    return first
  }

  it('asks it after the others until one of our tunnels through it closes, or for a short while', async () => {
    const { selector, a, b, clock } = await twoExits()
    // a has far more capacity: first for every request
    expect(await firstFor(selector)).toBe(a.toString())
    const ours = [selector.opened(a), selector.opened(a)]
    // past our share there: the refused attempt closes, then is reported
    const refused = selector.opened(a)
    refused()
    selector.report(a, { region: 'de' }, { ok: false, status: 'RATE_LIMITED' })
    // not now, for us: b first, a still a candidate behind it
    const next = (await selector.candidates({ region: 'de' })).map(String)
    expect(next).toEqual([b.toString(), a.toString()])
    await new Promise(resolve => setImmediate(resolve))
    // a slot of ours at a frees: a is first again
    ours[0]()
    expect(await firstFor(selector)).toBe(a.toString())
    // refused again, and nothing of ours closes: a goes last only for RATE_LIMITED_ASK_LATER_MS
    selector.report(a, { region: 'de' }, { ok: false, status: 'RATE_LIMITED' })
    expect(await firstFor(selector)).toBe(b.toString())
    clock.t += RATE_LIMITED_ASK_LATER_MS - 1
    expect(await firstFor(selector)).toBe(b.toString())
    clock.t += 1
    expect(await firstFor(selector)).toBe(a.toString())
    ours[1]()
  })

  it('is no failure of the exit\'s: a tunnel through it that works ends the wait, and other refusals do not start one', async () => {
    const { selector, a, b } = await twoExits()
    selector.report(a, { region: 'de' }, { ok: false, status: 'RATE_LIMITED' })
    expect(await firstFor(selector)).toBe(b.toString())
    selector.report(a, { region: 'de' }, { ok: true })
    expect(await firstFor(selector)).toBe(a.toString())
    selector.report(a, { region: 'de' }, { ok: false, status: 'INSUFFICIENT_CREDIT' })
    expect(await firstFor(selector)).toBe(a.toString())
    expect(selector.telemetry.predict(a.toString(), Date.now()).failures).toBe(0)
  })

  it('is not ended by the OK of an attempt begun before the refusal (a burst\'s admitted tunnels answer after its refused ones)', async () => {
    const { selector, a, b, clock } = await twoExits()
    selector.report(a, { region: 'de' }, { ok: false, status: 'RATE_LIMITED' })
    clock.t += 300
    // asked 500 ms ago, before the refusal: the exit's connect took that long
    selector.report(a, { region: 'de' }, { ok: true, setupMs: 500 })
    expect(await firstFor(selector)).toBe(b.toString())
    // asked after it: room again
    selector.report(a, { region: 'de' }, { ok: true, setupMs: 100 })
    expect(await firstFor(selector)).toBe(a.toString())
  })

  it('draws no new session onto it while it says "not now"', async () => {
    const { selector, a, b } = await twoExits()
    selector.report(a, { region: 'de' }, { ok: false, status: 'RATE_LIMITED' })
    for (let i = 0; i < 20; i++) expect(await firstFor(selector, { region: 'de', sessionId: `new-${i}` })).toBe(b.toString())
  })

  it('leaves a session\'s exit first: a session waits out "not now" where it is', async () => {
    const { selector, a, b } = await twoExits()
    const session = { region: 'de', sessionId: 'job-1' }
    const bound = await sessionExit(selector, session, [a, b])
    selector.report(bound, session, { ok: false, status: 'RATE_LIMITED' })
    expect(await firstFor(selector, session)).toBe(bound.toString())
    // a request without the session asks the other exit first
    expect(await firstFor(selector)).toBe((bound.equals(a) ? b : a).toString())
  })
})

/** The exit a session is bound to: its first candidate, used once. */
async function sessionExit (selector: RoutingSelector, session: { region: string, sessionId: string }, exits: PeerId[]): Promise<PeerId> {
  const first = (await selector.candidates(session))[0]
  await new Promise(resolve => setImmediate(resolve))
  const exit = exits.find(e => e.equals(first))!
  selector.report(exit, session, { ok: true })
  return exit
}
