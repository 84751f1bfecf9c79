import { describe, it, expect, afterAll } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { NodeProcess, freePort, tempDir, waitFor } from '../utils/cli.ts'
import { createIdentity } from '../../src/node/identity.ts'
import { spawnNode } from '../utils/network.ts'

/**
 * Review: `spareband start` of an exit whose named relay is down at start.
 * The keeper tries the relay once inside libp2p's start (afterStart) and
 * dispatches 'keeper:lost' there; the CLI subscribed only after
 * `await node.start()`, so the README's `warn relay lost, redialling it`
 * never appeared for this outage (and `info relay back` later came alone).
 */
describe('spareband start, named relay down at start', () => {
  const procs: NodeProcess[] = []
  afterAll(async () => { await Promise.all(procs.map(async p => p.kill())) })

  it('logs "relay lost, redialling it" once', async () => {
    const relayId = (await createIdentity(await tempDir('sb-rv-relay-'))).peerId
    const relayAddr = `/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${relayId}`
    const d = await tempDir('sb-rv-exit-')
    await createIdentity(d)
    await writeFile(join(d, 'config.toml'), '[network]\nredial_max_seconds = 2\n')
    const p = new NodeProcess(d, ['--network', 'local', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', `${relayAddr}/p2p-circuit`, '--api-port', '0', '--socks-port', '0', '--http-port', '0'])
    procs.push(p)
    await p.ready()
    await waitFor(() => p.output.includes('spareband node started'), { what: 'the start line' })
    // several redials (1-2 s apart) fail meanwhile
    await sleep(6_000)
    expect(p.output).toMatch(/relay lost, redialling it/)
    expect(p.output.match(/relay lost/g)).toHaveLength(1)
    // and status says so while it lasts (the log said it once)
    const warnings: string[] = (await p.status()).warnings
    expect(warnings.filter(w => w.startsWith(`relay ${relayAddr} is lost since `))).toHaveLength(1)
  }, 40_000)

  it('logs the named relay it connected to while starting (peer connected)', async () => {
    const relay = await spawnNode({ args: ['--no-supply'] })
    procs.push(relay.proc)
    const d = await tempDir('sb-rv-exit-up-')
    await createIdentity(d)
    const p = new NodeProcess(d, ['--network', 'local', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', `${relay.addresses[0]}/p2p-circuit`, '--api-port', '0', '--socks-port', '0', '--http-port', '0'])
    procs.push(p)
    await p.ready()
    await waitFor(() => p.output.includes('spareband node started'), { what: 'the start line' })
    await waitFor(() => new RegExp(`info +peer connected peer=${relay.peerId}`).test(p.output), { what: 'the relay\'s connection in the log', timeoutMs: 5000 })
  }, 40_000)
})
