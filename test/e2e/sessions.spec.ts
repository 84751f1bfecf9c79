import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { sha256, startBlackhole, startTargetServer } from '../utils/target-server.ts'
import { curl, spawnNode, waitForPeers } from '../utils/network.ts'
import { socksConnect } from '../utils/socks-client.ts'
import { freePort, waitFor } from '../utils/cli.ts'
import { callApi } from '../../src/cli/api-client.ts'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

/**
 * Session stickiness (`region-de-session-<id>`) with two exits in the
 * region, each allowing one consumer a single open tunnel, so an exit that
 * is up can answer "not now" (RATE_LIMITED). Real processes, real curl.
 */
describe('sessions keep their exit while it is up', () => {
  let target: TargetServer
  let exits: SpawnedNode[]
  let consumer: SpawnedNode

  beforeAll(async () => {
    target = await startTargetServer(1024 * 1024)
    const args = ['--allow-private-targets', '--exit-ports', String(target.port), '--max-tunnels-per-consumer', '1']
    const first = await spawnNode({ region: 'de', args })
    const second = await spawnNode({ region: 'de', args: [...args, '--bootstrap', first.addresses[0]] })
    exits = [first, second]
    consumer = await spawnNode({ region: 'jp', args: ['--no-supply', '--bootstrap', first.addresses[0], '--bootstrap', second.addresses[0]] })
    await waitForPeers(consumer, exits.map(e => e.peerId))
  })
  afterAll(async () => {
    await Promise.all([...(exits ?? []).map(async e => e.proc.kill()), consumer?.proc.kill()])
    await target?.close()
  })

  const totals = async (): Promise<number[]> => Promise.all(exits.map(async e => (await e.status()).exit.tunnelsTotal as number))
  const hello = async (user: string): Promise<string> => {
    const r = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, '--proxy-user', `${user}:x`, `http://127.0.0.1:${target.port}/hello`], 20_000)
    expect(r.stderr).toBe('')
    return r.stdout.toString()
  }

  it('a session\'s next tunnel waits for its exit\'s "too many open tunnels" to pass instead of moving to the other exit', async () => {
    const user = 'region-de-session-wait1'
    const before = await totals()
    // the session's first tunnel, held open: its exit now refuses this consumer a second one
    const held = await socksConnect(consumer.socksPort, '127.0.0.1', target.port, { user, password: 'x' })
    expect(held.reply).toBe(0)
    const afterFirst = await totals()
    const mine = afterFirst.findIndex((t, i) => t > before[i])
    expect(mine).toBeGreaterThanOrEqual(0)
    // the held tunnel ends a moment after the session asks for another
    setTimeout(() => held.socket.destroy(), 600)
    expect(await hello(user)).toBe('hello from the target\n')
    expect(await hello(user)).toBe('hello from the target\n')
    const after = await totals()
    expect(after[mine] - afterFirst[mine]).toBe(2)
    expect(after[1 - mine] - afterFirst[1 - mine]).toBe(0)
    await waitFor(async () => (await consumer.status()).proxy.tunnelsOpen === 0, { timeoutMs: 10_000, what: 'tunnels closed' })
  })
})

/**
 * Two exits in de that a pick tells apart: "fast" advertises 1000 Mbit/s
 * at the default price, "slow" 1 Mbit/s at 50 credits per GB, so a
 * session lands on slow only when fast cannot take it. Real processes,
 * real curl through the HTTP proxy.
 */
describe('a session keeps one exit: requests that come together, and the target\'s refusals', () => {
  let target: TargetServer
  let closedPort: number
  let blackhole: Awaited<ReturnType<typeof startBlackhole>>
  let fast: SpawnedNode
  let slow: SpawnedNode
  let consumer: SpawnedNode

  beforeAll(async () => {
    target = await startTargetServer(1024 * 1024)
    closedPort = await freePort()
    blackhole = await startBlackhole()
    const ports = `${target.port},${closedPort},${blackhole.port}`
    // a dead host's connect times out after 2 s rather than 10
    fast = await spawnNode({ region: 'de', args: ['--allow-private-targets', '--exit-ports', ports, '--capacity-mbps', '1000'], config: '[exit]\nconnect_timeout_seconds = 2\n' })
    slow = await spawnNode({ region: 'de', args: ['--allow-private-targets', '--exit-ports', ports, '--capacity-mbps', '1', '--bootstrap', fast.addresses[0]], config: '[exit]\nprice_per_gb = 50\nconnect_timeout_seconds = 2\n' })
    consumer = await spawnNode({ region: 'jp', args: ['--no-supply', '--bootstrap', fast.addresses[0], '--bootstrap', slow.addresses[0]] })
    await waitForPeers(consumer, [fast.peerId, slow.peerId])
  })
  afterAll(async () => {
    await Promise.all([fast?.proc.kill(), slow?.proc.kill(), consumer?.proc.kill()])
    await target?.close()
    await blackhole?.close()
  })

  /** One GET through the HTTP proxy: the exit that carried it (or the refusal's status) and the body's SHA-256. */
  const get = async (user: string, url: string): Promise<{ exit?: string, status?: string, code: number, sha256: string }> => {
    const r = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', `${user}:`, url], 30_000)
    expect(r.stderr).toBe('')
    const end = r.stdout.indexOf('\r\n\r\n')
    const head = r.stdout.subarray(0, end).toString('latin1')
    return {
      exit: /^x-spareband-exit: (\S+)$/im.exec(head)?.[1],
      status: /^x-spareband-status: (\S+)$/im.exec(head)?.[1],
      code: Number(head.split(' ')[1]),
      sha256: sha256(r.stdout.subarray(end + 4))
    }
  }
  const slice = (n: number): string => sha256(target.blob.subarray(0, n))

  it('sends the requests a new session starts together through one exit, not each through its own pick', async () => {
    for (const session of ['burst1', 'burst2']) {
      const got = await Promise.all(Array.from({ length: 40 }, async (_, i) => get(`region-de-session-${session}`, `http://127.0.0.1:${target.port}/slice/${1000 + i}`)))
      got.forEach((g, i) => expect(g.sha256).toBe(slice(1000 + i)))
      expect(new Set(got.map(g => g.exit)).size).toBe(1)
      // and the session stays there
      expect((await get(`region-de-session-${session}`, `http://127.0.0.1:${target.port}/slice/10`)).exit).toBe(got[0].exit)
    }
  })

  it('takes a UUID as a session id, through both proxies', async () => {
    const id = '550e8400-e29b-41d4-a716-446655440000'
    const viaHttp = await get(`region-de-session-${id}`, `http://127.0.0.1:${target.port}/slice/2048`)
    expect([viaHttp.code, viaHttp.sha256]).toEqual([200, slice(2048)])
    for (let i = 0; i < 3; i++) {
      const r = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, '--proxy-user', `region-de-session-${id}:x`, `http://127.0.0.1:${target.port}/slice/${3000 + i}`])
      expect(r.stderr).toBe('')
      expect(sha256(r.stdout)).toBe(slice(3000 + i))
    }
    expect((await get(`region-de-session-${id}`, `http://127.0.0.1:${target.port}/slice/1`)).exit).toBe(viaHttp.exit)
  })

  it('keeps a session on its exit after the target refused a connection through it', async () => {
    const users = ['region-de-session-refused1', 'region-de-session-refused2', 'region-de-session-refused3']
    // the sessions land on slow while fast is paused (it answers BUSY, and they move on)
    await callApi(fast.dataDir, '/v1/exit/pause', { method: 'POST', body: {} })
    for (const user of users) expect((await get(user, `http://127.0.0.1:${target.port}/slice/100`)).exit).toBe(slow.peerId)
    await callApi(fast.dataDir, '/v1/exit/resume', { method: 'POST', body: {} })
    for (const user of users) {
      const refused = await get(user, `http://127.0.0.1:${closedPort}/`)
      expect([refused.code, refused.status]).toEqual([502, 'CONNECT_REFUSED'])
      // the exit is up and did its job: the session stays on it
      for (let i = 0; i < 3; i++) {
        const g = await get(user, `http://127.0.0.1:${target.port}/slice/${5000 + i}`)
        expect([g.exit, g.sha256]).toEqual([slow.peerId, slice(5000 + i)])
      }
    }
  })
  it('fails a request to a dead host through one exit, in one connect timeout, and keeps the session there', async () => {
    const user = 'region-de-session-deadhost1'
    const first = await get(user, `http://127.0.0.1:${target.port}/slice/64`)
    expect([first.code, first.sha256]).toEqual([200, slice(64)])
    const timeouts = async (): Promise<number[]> => Promise.all([fast, slow].map(async e => (await e.status()).exit.deniedByStatus.TIMEOUT ?? 0))
    const before = await timeouts()
    const dead = await get(user, `http://127.0.0.1:${blackhole.port}/`)
    expect([dead.code, dead.status]).toEqual([504, 'TIMEOUT'])
    // the session's exit tried the host; the other exit was not sent to wait for it too
    const after = await timeouts()
    const mine = first.exit === fast.peerId ? 0 : 1
    expect([after[mine] - before[mine], after[1 - mine] - before[1 - mine]]).toEqual([1, 0])
    const next = await get(user, `http://127.0.0.1:${target.port}/slice/65`)
    expect([next.exit, next.sha256]).toEqual([first.exit, slice(65)])
  })
})
