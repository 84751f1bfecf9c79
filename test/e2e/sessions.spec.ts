import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startTargetServer } from '../utils/target-server.ts'
import { curl, spawnNode, waitForPeers } from '../utils/network.ts'
import { socksConnect } from '../utils/socks-client.ts'
import { waitFor } from '../utils/cli.ts'
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
