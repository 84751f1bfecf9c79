/**
 * ExitLiveness decides, from a ping and what was heard of an exit, whether
 * an exit a set-up waits on (or whose tunnels went silent) is gone. Its
 * ping, hearing and dropping are given here as plain functions (the real
 * ones ping on the exit's connection, read the ingress's tunnels and end
 * them: test/e2e/unresponsive-exit.spec.ts runs them with a stopped exit
 * process). Times are short and real; the waits leave wide margins for a
 * loaded machine, and outcomes are polled for rather than slept on.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ExitLiveness, ExitUnresponsiveError } from '../../src/relay/exit-liveness.ts'
import type { ExitLivenessInit } from '../../src/relay/exit-liveness.ts'
import type { AbortOptions, PeerId } from '@libp2p/interface'

let a: PeerId
let b: PeerId
let c: PeerId
beforeAll(async () => {
  [a, b, c] = await Promise.all([0, 1, 2].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
})

type Ping = (exit: PeerId, options: AbortOptions) => Promise<boolean>
/** A ping that answers after `ms`, or never (Infinity), unless its signal aborts first. */
const answeringAfter = (ms: number): Ping => async (_exit, options) => new Promise((resolve, reject) => {
  const t = ms === Infinity ? undefined : setTimeout(() => { resolve(true) }, ms)
  options.signal?.addEventListener('abort', () => { clearTimeout(t); reject(options.signal?.reason) }, { once: true })
})

const SUSPECT_MS = 30
const PING_MS = 100
/** The wait, the ping's time and the grace for a late answer (250 ms): when a check that finds an exit gone has ended. */
const CHECK_MS = SUSPECT_MS + PING_MS + 250

const livenesses: ExitLiveness[] = []
afterEach(() => { for (const l of livenesses.splice(0)) l.stop() })

interface Made { liveness: ExitLiveness, drops: Array<{ exit: string, reason: Error }>, pings: string[] }

function make (ping: Ping, init: Partial<ExitLivenessInit> = {}): Made {
  const drops: Made['drops'] = []
  const pings: string[] = []
  const liveness = new ExitLiveness({
    log: defaultLogger().forComponent('test'),
    ping: async (exit, options) => { pings.push(exit.toString()); return ping(exit, options) },
    heardSince: () => false,
    drop: (exit, reason) => { drops.push({ exit: exit.toString(), reason }) },
    suspectAfterMs: SUSPECT_MS,
    pingTimeoutMs: PING_MS,
    avoidMs: 600,
    ...init
  })
  livenesses.push(liveness)
  return { liveness, drops, pings }
}

/** Polls `done` every 10 ms for up to `ms`. */
async function until (done: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms
  while (!done()) {
    if (performance.now() > end) throw new Error('timed out')
    await sleep(10)
  }
}

const never = (): void => {}

describe('ExitLiveness', () => {
  it('leaves an exit alone when the answer comes before the wait grows suspect', async () => {
    const { liveness, drops, pings } = make(answeringAfter(Infinity))
    const unwatch = liveness.watch(a, never)
    await sleep(5)
    unwatch()
    await sleep(CHECK_MS + 200)
    expect(pings).toEqual([])
    expect(drops).toEqual([])
  })

  it('leaves an exit that answers its ping alone, however long the set-up takes', async () => {
    const { liveness, drops, pings } = make(answeringAfter(10))
    liveness.watch(a, never)
    await until(() => pings.length > 0)
    await sleep(CHECK_MS + 200)
    expect(pings).toEqual([a.toString()])
    expect(drops).toEqual([])
    expect(liveness.avoided(a)).toBe(false)
  })

  it('finds an exit that neither answers nor is heard from gone, once for every set-up waiting on it: they are told, its tunnels are ended, and it is asked last', async () => {
    const { liveness, drops, pings } = make(answeringAfter(Infinity))
    const told: Error[] = []
    for (let i = 0; i < 5; i++) liveness.watch(a, reason => told.push(reason))
    await until(() => drops.length > 0)
    await sleep(200)
    expect(pings).toEqual([a.toString()])
    expect(drops.map(d => d.exit)).toEqual([a.toString()])
    expect(drops[0].reason).toBeInstanceOf(ExitUnresponsiveError)
    expect(drops[0].reason.message).toContain(a.toString())
    expect(told).toHaveLength(5)
    expect(told.every(r => r === drops[0].reason)).toBe(true)
    expect(liveness.dropped).toBe(1)
    expect(liveness.avoided(a)).toBe(true)
    expect(liveness.arrange([a, b, c])).toEqual([b, c, a])
    expect(liveness.arrange([b, c])).toEqual([b, c])
  })

  it('tells only the set-ups still waiting', async () => {
    const { liveness, drops } = make(answeringAfter(Infinity))
    const told: string[] = []
    const unwatch = liveness.watch(a, () => told.push('answered already'))
    liveness.watch(a, () => told.push('waiting'))
    unwatch()
    await until(() => drops.length > 0)
    expect(told).toEqual(['waiting'])
  })

  it('judges nothing when there is no connection to ping on', async () => {
    const { liveness, drops, pings } = make(async () => false)
    liveness.watch(a, never)
    await until(() => pings.length > 0)
    await sleep(CHECK_MS + 200)
    expect(drops).toEqual([])
    expect(liveness.avoided(a)).toBe(false)
  })

  it('does not find gone an exit whose ping is late but which was heard from meanwhile (its answer queues behind tunnel bytes)', async () => {
    const { liveness, drops, pings } = make(answeringAfter(Infinity), { heardSince: () => true })
    liveness.watch(a, never)
    await until(() => pings.length > 0)
    await sleep(CHECK_MS + 200)
    expect(drops).toEqual([])
    expect(liveness.avoided(a)).toBe(false)
  })

  it('does not find gone an exit whose ping is late but which answers other tunnel requests meanwhile (a burst of set-ups)', async () => {
    const { liveness, drops, pings } = make(answeringAfter(Infinity))
    liveness.watch(a, never)
    await until(() => pings.length > 0)
    liveness.answered(a)
    await sleep(CHECK_MS + 200)
    expect(drops).toEqual([])
    // an answer before the check began says nothing of now
    liveness.answered(b)
    liveness.watch(b, never)
    await until(() => drops.length > 0)
    expect(drops.map(d => d.exit)).toEqual([b.toString()])
  })

  it('takes an answer that lands just after the ping\'s time (a busy loop runs timers before it reads)', async () => {
    const { liveness, drops, pings } = make(answeringAfter(PING_MS + 60))
    liveness.watch(a, never)
    await until(() => pings.length > 0)
    await sleep(CHECK_MS + 200)
    expect(drops).toEqual([])
  })

  it('tries a ping that fails at once again (no stream just now), and finds the exit gone only when none answers in the whole time', async () => {
    let calls = 0
    const flaky: Ping = async (exit, options) => {
      if (++calls === 1) throw new Error('too many outbound streams')
      return answeringAfter(10)(exit, options)
    }
    const first = make(flaky)
    first.liveness.watch(a, never)
    await until(() => calls >= 2)
    await sleep(CHECK_MS + 200)
    expect(first.drops).toEqual([])

    const failing = make(async () => { throw new Error('stream reset') })
    failing.liveness.watch(a, never)
    await until(() => failing.drops.length > 0)
    expect(failing.drops.map(d => d.exit)).toEqual([a.toString()])
    expect(failing.pings.length).toBeGreaterThan(1)
  })

  it('asks a dropped exit first again once a tunnel through it opened, or its time is up', async () => {
    const { liveness, drops } = make(answeringAfter(Infinity))
    liveness.watch(a, never)
    liveness.watch(b, never)
    await until(() => drops.length === 2)
    expect(liveness.arrange([a, b, c])).toEqual([c, a, b])
    liveness.alive(a)
    expect(liveness.arrange([a, b, c])).toEqual([a, c, b])
    await until(() => !liveness.avoided(b))
    expect(liveness.arrange([a, b, c])).toEqual([a, b, c])
  })

  it('avoids an exit found gone again soon after for twice as long', async () => {
    const { liveness, drops } = make(answeringAfter(Infinity))
    /** How long `a` stays avoided after its next drop, measured from the drop. */
    const avoidedFor = async (): Promise<number> => {
      const n = drops.length
      liveness.watch(a, never)
      await until(() => drops.length > n)
      const droppedAt = performance.now()
      await until(() => !liveness.avoided(a))
      return performance.now() - droppedAt
    }
    const first = await avoidedFor()
    const second = await avoidedFor()
    // 600 ms, then 1200 ms; the polls see each drop a little late, never early
    expect(first).toBeGreaterThan(400)
    expect(first).toBeLessThan(1100)
    expect(second).toBeGreaterThan(1000)
    expect(second).toBeGreaterThan(first * 1.5)
  })

  it('checks the exits of tunnels that moved nothing, once per silentAfterMs each, with the longer ping time, from start to stop', async () => {
    const asked: number[] = []
    let silent: PeerId[] = [a, b]
    const timeouts: number[] = []
    // a answers, b never does
    const { liveness, drops, pings } = make(async (exit, options) => {
      const started = performance.now()
      return answeringAfter(exit.equals(a) ? 5 : Infinity)(exit, options).finally(() => { if (!exit.equals(a)) timeouts.push(performance.now() - started) })
    }, {
      silentExits: ms => { asked.push(ms); return silent },
      silentAfterMs: 400,
      silentPingTimeoutMs: 300
    })
    await sleep(500)
    expect(asked).toEqual([])
    liveness.start()
    await until(() => drops.length > 0)
    expect(asked[0]).toBe(400)
    expect(drops.map(d => d.exit)).toEqual([b.toString()])
    // the silent path's own ping time (300 ms), not the set-up's (100 ms)
    expect(timeouts[0]).toBeGreaterThanOrEqual(290)
    // a again once its 400 ms are up, not at every sweep (every 200 ms); b, found gone, not at all while avoided
    silent = [a]
    const pingsOfA = pings.filter(p => p === a.toString()).length
    const from = performance.now()
    await sleep(1000)
    const more = pings.filter(p => p === a.toString()).length - pingsOfA
    expect(more).toBeGreaterThanOrEqual(1)
    // at most one per 400 ms however late the timers ran (at every 200 ms sweep it would be about twice that)
    expect(more).toBeLessThanOrEqual(Math.floor((performance.now() - from) / 400) + 1)
    liveness.stop()
    const after = pings.length
    await sleep(600)
    expect(pings.length).toBe(after)
    expect(drops.map(d => d.exit)).toEqual([b.toString()])
  })

  it('checks nothing after stop', async () => {
    const { liveness, pings } = make(answeringAfter(Infinity))
    liveness.watch(a, never)
    liveness.stop()
    await sleep(CHECK_MS + 200)
    expect(pings).toEqual([])
  })
})
