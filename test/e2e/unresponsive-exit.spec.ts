import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startTargetServer } from '../utils/target-server.ts'
import { curl, spawnNode } from '../utils/network.ts'
import { runCliJson, waitFor } from '../utils/cli.ts'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

/**
 * An exit that stops answering without closing its connections: a home
 * line that drops, a host that hangs. SIGSTOP makes one: the kernel keeps
 * its TCP connections up, and nothing on them answers.
 */
describe('an exit that stops answering', () => {
  let target: TargetServer
  let consumer: SpawnedNode
  const exits: SpawnedNode[] = []
  /** The exit the first test stops, and the one it leaves running. */
  let victim: SpawnedNode
  let survivor: SpawnedNode

  beforeAll(async () => {
    // /drip sends it at about 6 MB/s: a download that runs for seconds
    target = await startTargetServer(64 * 1024 * 1024)
    const args = ['--allow-private-targets', '--exit-ports', String(target.port)]
    exits.push(await spawnNode({ region: 'de', args }))
    exits.push(await spawnNode({ region: 'de', args: [...args, '--bootstrap', exits[0].addresses[0]] }))
    consumer = await spawnNode({ region: 'ch', args: ['--no-supply', '--bootstrap', exits[0].addresses[0], '--bootstrap', exits[1].addresses[0]] })
  })
  afterAll(async () => {
    for (const e of exits) e.proc.child.kill('SIGCONT')
    await Promise.all([consumer, ...exits].map(async n => n?.proc.kill()))
    await target?.close()
  })

  const hello = async (user: string): Promise<{ ok: boolean, ms: number }> => {
    const r = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', `${user}:`, `http://127.0.0.1:${target.port}/hello`])
    return { ok: r.stdout.toString() === 'hello from the target\n', ms: r.ms }
  }

  it('is dropped soon: requests pinned to it move to the other exit', async () => {
    // the consumer knows both as exits of de (their ads are in the DHT)
    await waitFor(async () => (await runCliJson(['providers', '--region', 'de', '--json', '--data-dir', consumer.dataDir])).length === 2, { timeoutMs: 60_000, what: 'both exits\' ads' })
    // the exit a session sticks to is the one to stop
    const pinned = 'region-de-session-pinned'
    const before = await Promise.all(exits.map(async e => (await e.status()).exit.tunnelsTotal))
    expect((await hello(pinned)).ok).toBe(true)
    const carried = await Promise.all(exits.map(async (e, i) => (await e.status()).exit.tunnelsTotal - before[i]))
    victim = exits[carried.indexOf(1)]
    survivor = exits[carried.indexOf(0)]
    expect(carried.sort()).toEqual([0, 1])
    const carriedBefore = (await survivor.status()).exit.tunnelsTotal
    victim.proc.child.kill('SIGSTOP')
    // a scraper's burst: half of it pinned to the stopped exit, the rest free to go anywhere
    const burst = await Promise.all(Array.from({ length: 8 }, async (_, i) => hello(i % 2 === 0 ? pinned : `region-de-session-burst${i}`)))
    expect(burst.map(r => r.ok)).toEqual(Array(8).fill(true))
    // without the check, a request waiting on the stopped exit took the whole response timeout (15 s) before it moved on
    const slowest = Math.max(...burst.map(r => r.ms))
    expect(slowest).toBeLessThan(12_000)
    const status = await consumer.status()
    expect(status.proxy.exitsDropped).toBe(1)
    // then it is asked last: no request waits on it
    const after: number[] = []
    for (let i = 0; i < 6; i++) {
      const r = await hello(i % 2 === 0 ? pinned : `region-de-session-after${i}`)
      expect(r.ok).toBe(true)
      after.push(Math.round(r.ms))
    }
    expect(Math.max(...after)).toBeLessThan(2_000)
    expect((await survivor.status()).exit.tunnelsTotal - carriedBefore).toBe(14)
    console.log(`unresponsive-exit: burst of 8 after SIGSTOP done in ${Math.round(slowest)} ms; the next 6 took ${after.join(', ')} ms`)
  }, 90_000)

  it('ends a download from it in half a minute, rather than leave it stalled for the connection monitor\'s minute', async () => {
    const transfer = curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de:', `http://127.0.0.1:${target.port}/drip`], 90_000)
    await waitFor(async () => (await survivor.status()).exit.tunnelsOpen > 0, { what: 'the download to start' })
    survivor.proc.child.kill('SIGSTOP')
    const stoppedAt = Date.now()
    const cut = await transfer
    const after = Date.now() - stoppedAt
    // reset, not passed off as complete
    expect(cut.code).not.toBe(0)
    expect(cut.stdout.byteLength).toBeLessThan(target.blob.byteLength)
    // silent for 10 s, found at the next sweep (up to 5 s), the silent path's ping time (15 s): 25-30 s; the connection monitor took 60
    expect(after).toBeLessThan(45_000)
    expect((await consumer.status()).proxy.exitsDropped).toBe(2)
    console.log(`unresponsive-exit: a download stalled by SIGSTOP was reset after ${after} ms, with ${cut.stdout.byteLength} of ${target.blob.byteLength} bytes`)
  }, 90_000)
})
