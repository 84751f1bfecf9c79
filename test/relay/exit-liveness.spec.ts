/**
 * ExitLiveness decides, from a ping and the tunnel bytes heard, whether an
 * exit a set-up waits on is gone. Its ping, hearing and dropping are given
 * here as plain functions (the real ones are libp2p's ping, the ingress's
 * flows and the connections' abort: test/e2e/unresponsive-exit.spec.ts
 * runs them with a stopped exit process).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ExitLiveness, ExitUnresponsiveError } from '../../src/relay/exit-liveness.ts'
import type { AbortOptions, PeerId } from '@libp2p/interface'

let a: PeerId
let b: PeerId
let c: PeerId
beforeAll(async () => {
  [a, b, c] = await Promise.all([0, 1, 2].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
})

type Ping = (exit: PeerId, options: AbortOptions) => Promise<unknown>
/** A ping that answers after `ms`, or never (Infinity), unless its signal aborts first. */
const answeringAfter = (ms: number): Ping => async (_exit, options) => new Promise((resolve, reject) => {
  const t = ms === Infinity ? undefined : setTimeout(resolve, ms)
  options.signal?.addEventListener('abort', () => { clearTimeout(t); reject(options.signal?.reason) }, { once: true })
})

const livenesses: ExitLiveness[] = []
afterEach(() => { for (const l of livenesses.splice(0)) l.stop() })

function make (ping: Ping, heard: (exit: PeerId, since: number) => boolean = () => false): { liveness: ExitLiveness, drops: Array<{ exit: string, reason: Error }>, pings: string[] } {
  const drops: Array<{ exit: string, reason: Error }> = []
  const pings: string[] = []
  const liveness = new ExitLiveness({
    log: defaultLogger().forComponent('test'),
    ping: async (exit, options) => { pings.push(exit.toString()); return ping(exit, options) },
    heardSince: heard,
    drop: (exit, reason) => { drops.push({ exit: exit.toString(), reason }) },
    suspectAfterMs: 30,
    pingTimeoutMs: 100,
    avoidMs: 400
  })
  livenesses.push(liveness)
  return { liveness, drops, pings }
}

/** Long enough for the wait, the ping's time and the grace for a late answer to pass. */
const CHECK_DONE_MS = 30 + 100 + 250 + 150

describe('ExitLiveness', () => {
  it('leaves an exit alone when the answer comes before the wait grows suspect', async () => {
    const { liveness, drops, pings } = make(answeringAfter(Infinity))
    const unwatch = liveness.watch(a)
    await sleep(10)
    unwatch()
    await sleep(CHECK_DONE_MS)
    expect(pings).toEqual([])
    expect(drops).toEqual([])
  })

  it('leaves an exit that answers its ping alone, however long the set-up takes', async () => {
    const { liveness, drops, pings } = make(answeringAfter(20))
    liveness.watch(a)
    await sleep(CHECK_DONE_MS)
    expect(pings).toEqual([a.toString()])
    expect(drops).toEqual([])
    expect(liveness.avoided(a)).toBe(false)
  })

  it('ends the connections of an exit that neither answers nor sends, once for all the set-ups waiting on it, and asks it last', async () => {
    const { liveness, drops, pings } = make(answeringAfter(Infinity))
    for (let i = 0; i < 5; i++) liveness.watch(a)
    await sleep(CHECK_DONE_MS)
    expect(pings).toEqual([a.toString()])
    expect(drops.map(d => d.exit)).toEqual([a.toString()])
    expect(drops[0].reason).toBeInstanceOf(ExitUnresponsiveError)
    expect(drops[0].reason.message).toContain(a.toString())
    expect(liveness.dropped).toBe(1)
    expect(liveness.avoided(a)).toBe(true)
    expect(liveness.arrange([a, b, c])).toEqual([b, c, a])
    expect(liveness.arrange([b, c])).toEqual([b, c])
  })

  it('does not end an exit whose ping is late but which sent tunnel bytes meanwhile (its answer queues behind them)', async () => {
    const { liveness, drops } = make(answeringAfter(Infinity), () => true)
    liveness.watch(a)
    await sleep(CHECK_DONE_MS)
    expect(drops).toEqual([])
    expect(liveness.avoided(a)).toBe(false)
  })

  it('does not end an exit whose ping is late but which answers other tunnel requests meanwhile (a burst of set-ups)', async () => {
    const { liveness, drops } = make(answeringAfter(Infinity))
    liveness.watch(a)
    await sleep(30 + 50)
    liveness.answered(a)
    await sleep(CHECK_DONE_MS)
    expect(drops).toEqual([])
    // an answer before the check began says nothing of now
    liveness.answered(b)
    liveness.watch(b)
    await sleep(CHECK_DONE_MS)
    expect(drops.map(d => d.exit)).toEqual([b.toString()])
  })

  it('takes an answer that lands just after the ping\'s time (a busy loop runs timers before it reads)', async () => {
    const { liveness, drops } = make(answeringAfter(100 + 100))
    liveness.watch(a)
    await sleep(CHECK_DONE_MS)
    expect(drops).toEqual([])
  })

  it('tries a ping that fails at once again (no stream just now), and ends the exit only when none answers in the whole time', async () => {
    let calls = 0
    const flaky: Ping = async (exit, options) => {
      calls++
      if (calls === 1) throw new Error('too many outbound streams')
      return answeringAfter(10)(exit, options)
    }
    const first = make(flaky)
    first.liveness.watch(a)
    await sleep(CHECK_DONE_MS)
    expect(first.drops).toEqual([])
    expect(calls).toBe(2)

    const failing = make(async () => { throw new Error('no connection') })
    failing.liveness.watch(a)
    await sleep(CHECK_DONE_MS)
    expect(failing.drops.map(d => d.exit)).toEqual([a.toString()])
  })

  it('asks a dropped exit first again once a tunnel through it opened, and after its time is up', async () => {
    const { liveness } = make(answeringAfter(Infinity))
    liveness.watch(a)
    liveness.watch(b)
    await sleep(CHECK_DONE_MS)
    expect(liveness.arrange([a, b, c])).toEqual([c, a, b])
    liveness.alive(a)
    expect(liveness.arrange([a, b, c])).toEqual([a, c, b])
    await sleep(400)
    expect(liveness.avoided(b)).toBe(false)
    expect(liveness.arrange([a, b, c])).toEqual([a, b, c])
  })

  it('avoids an exit found gone again soon after for twice as long', async () => {
    const { liveness, drops } = make(answeringAfter(Infinity))
    /** How long `a` stays avoided after its next drop, measured from the drop (polled every 10 ms). */
    const avoidedFor = async (): Promise<number> => {
      const n = drops.length
      liveness.watch(a)
      while (drops.length === n) await sleep(5)
      const droppedAt = performance.now()
      while (liveness.avoided(a)) await sleep(10)
      return performance.now() - droppedAt
    }
    const first = await avoidedFor()
    const second = await avoidedFor()
    expect(first).toBeGreaterThanOrEqual(390)
    expect(first).toBeLessThan(800)
    expect(second).toBeGreaterThanOrEqual(790)
  })

  it('checks the exits of tunnels that have had nothing from them, once per silentAfterMs each, from start to stop', async () => {
    const asked: number[] = []
    let silent: PeerId[] = [a, b]
    const pings: string[] = []
    const drops: string[] = []
    const liveness = new ExitLiveness({
      log: defaultLogger().forComponent('test'),
      // a answers, b does not
      ping: async (exit, options) => { pings.push(exit.toString()); return answeringAfter(exit.equals(a) ? 5 : Infinity)(exit, options) },
      heardSince: () => false,
      drop: exit => { drops.push(exit.toString()) },
      silentExits: ms => { asked.push(ms); return silent },
      suspectAfterMs: 30,
      pingTimeoutMs: 100,
      silentAfterMs: 200
    })
    livenesses.push(liveness)
    await sleep(300)
    expect(asked).toEqual([])
    liveness.start()
    await sleep(100 + 100 + 250 + 100)
    expect(asked[0]).toBe(200)
    expect(drops).toEqual([b.toString()])
    // a again once its 200 ms are up, not at every sweep (every 100 ms)
    silent = [a]
    await sleep(400)
    const pingsOfA = pings.filter(p => p === a.toString()).length
    expect(pingsOfA).toBeGreaterThanOrEqual(2)
    expect(pingsOfA).toBeLessThanOrEqual(4)
    liveness.stop()
    const after = pings.length
    await sleep(300)
    expect(pings.length).toBe(after)
    expect(drops).toEqual([b.toString()])
  })

  it('checks nothing after stop', async () => {
    const { liveness, pings } = make(answeringAfter(Infinity))
    liveness.watch(a)
    liveness.stop()
    await sleep(CHECK_DONE_MS)
    expect(pings).toEqual([])
  })
})
