/**
 * An exit's capacity ad counts as published only once a DHT server took
 * it: kad-dht's put and provide end without an error when none did, and
 * an exit at home whose only DHT server was away took its ad for
 * published and tried again 3 h later. Real nodes on loopback, real
 * kad-dht: the exit and its first peer are DHT clients, then a server
 * comes, and a consumer that knows only that server finds the exit.
 */

import { afterAll, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandConfigInput, SparebandNode } from '../../src/index.ts'
import type { AdvertiserStatus } from '../../src/routing/advertiser.ts'

const nodes: SparebandNode[] = []
afterAll(async () => { for (const n of nodes.reverse()) await n.stop().catch(() => {}) })

async function start (config: SparebandConfigInput): Promise<SparebandNode> {
  const node = await createSparebandNode({
    dataDir: await tempDir('sb-ad-servers-'),
    config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8 }, ...config, network: { local_testnet: true, ...config.network } }
  })
  nodes.push(node)
  await node.start()
  return node
}

const advertising = (node: SparebandNode): Partial<AdvertiserStatus> => node.status().routing?.advertising ?? {}

it('an ad that reached no DHT server is not taken for published: retried until a server takes it, and a consumer then finds the exit', async () => {
  const first = await start({ exit: { enabled: false } })
  const exit = await start({ region: 'de', network: { dht_server: false, bootstrap: [first.status().addresses[0]] } })
  await waitFor(() => advertising(exit).published === true, { what: 'the ad published to the first server', timeoutMs: 30_000 })
  expect(advertising(exit).peersReached).toBe(1)

  // a DHT client stays connected (the exit has peers, none of them a server)
  const client = await start({ exit: { enabled: false }, network: { dht_server: false, bootstrap: [exit.status().addresses[0] ?? first.status().addresses[0]] } })
  await exit.libp2p.dial(multiaddr(client.status().addresses[0]))
  // the only DHT server goes away (a young network's bootstrap restarting); the exit's offer changes meanwhile
  await first.stop()
  // what was published while it stopped counts; what comes after the pause must not
  const before = advertising(exit).lastPublishedAt
  await exit.pauseExit()
  await waitFor(() => advertising(exit).lastError != null, { what: 'a publication that reached no server', timeoutMs: 45_000, intervalMs: 500 })
  // kad-dht's put reached no server (its routing table still named the one gone), or waited out its
  // 30 s for a routing-table peer: either way no publication, where the old code took the first for one
  expect(advertising(exit).lastError).toMatch(/the ad reached no DHT server|abort/i)
  expect(advertising(exit).lastPublishedAt).toBe(before)

  const server = await start({ exit: { enabled: false } })
  await exit.libp2p.dial(multiaddr(server.status().addresses[0]))
  await waitFor(() => advertising(exit).lastError == null && advertising(exit).lastPublishedAt !== before, { what: 'the ad published to the new server', timeoutMs: 60_000 })
  expect(advertising(exit).peersReached).toBe(1)
  // a consumer that knows only the new server finds the exit through it
  await exit.resumeExit()
  const consumer = await start({ exit: { enabled: false }, network: { dht_server: false, bootstrap: [server.status().addresses[0]] } })
  const found = await waitFor(async () => {
    const rows = await consumer.providers('de')
    // from its ad in the DHT: identify, should the consumer meet the exit meanwhile, would list it too
    return rows.find(r => r.peerId === exit.peerId.toString() && r.source === 'dht')
  }, { what: 'the exit\'s ad among the providers of de', timeoutMs: 20_000 })
  expect(found).toBeDefined()
}, 180_000)

