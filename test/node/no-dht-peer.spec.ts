/**
 * Nodes that meet at private addresses on a network that is not a local
 * testnet: they connect, but the DHT takes peers at public addresses only,
 * so its routing table stays empty. Status says so (a node used to show
 * "connections 1" and no warning while every request got NO_EXIT), and an
 * exit whose ad cannot be published still stops at once (it waited out the
 * publication's 30 s, past the CLI's 5 s for a clean stop). Real nodes on
 * loopback, which is a private address like a LAN's.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { createSparebandNode } from '../../src/index.ts'
import { NO_DHT_PEER_GRACE_MS, noDhtPeerWarning } from '../../src/node/alone-warning.ts'
import { resolveConfig } from '../../src/node/config.ts'
import { warningName } from '../../src/cli/warning-log.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandConfigInput, SparebandNode } from '../../src/index.ts'

const nodes: SparebandNode[] = []
afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => n.stop().catch(() => {}))) })

const base = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8 } }

async function start (config: Record<string, unknown>): Promise<SparebandNode> {
  const node = await createSparebandNode({ dataDir: await tempDir('sb-no-dht-'), config: { ...base, ...config } as SparebandConfigInput })
  nodes.push(node)
  await node.start()
  return node
}

describe('peers but no DHT peer', () => {
  it('two nodes of the "spareband" network on loopback connect, keep an empty routing table, and status warns 30 s on, naming the cause and the fix', async () => {
    const first = await start({ region: 'de', exit: { enabled: false } })
    const second = await start({ region: 'us', exit: { enabled: false }, network: { bootstrap: first.status().addresses } })
    await waitFor(() => second.status().peers > 0, { what: 'the second node to connect' })
    const connectedAt = Date.now()
    const warned = (): string[] => second.status().warnings.filter(w => w.startsWith('no DHT peer: '))
    // what identify and the DHT make of it within a few seconds: still no DHT peer, and no warning yet (the grace)
    await new Promise(resolve => setTimeout(resolve, 3000))
    expect(second.status().dht.routingTableSize).toBe(0)
    expect(warned()).toEqual([])
    // the real node's connections make the warning once the grace is over
    await waitFor(() => warned().length === 1, { what: 'the warning', timeoutMs: NO_DHT_PEER_GRACE_MS + 15_000 })
    expect(Date.now() - connectedAt).toBeGreaterThanOrEqual(NO_DHT_PEER_GRACE_MS - 1000)
    const [warning] = warned()
    // it still reaches the exits it is connected to (through what identify told of them), and no other
    expect(warning).toMatch(/^no DHT peer: connected to 1 peer\(s\), but none is in the DHT's routing table after 3\d s connected, so this node finds no exit beyond the peers it is connected to \(NO_EXIT for the rest\)/)
    expect(warning).toContain('every peer is at a private or loopback address (127.0.0.1)')
    expect(warning).toContain('--network local')
    expect(warning).toContain('"local_testnet": true')
    // its name for the start log's change detection stays put as the seconds go by
    const later = noDhtPeerWarning(resolveConfig([{ source: 'test', values: base }]), { peers: 2, routingTableSize: 0, connectedMs: 95_000, remoteAddrs: [multiaddr('/ip4/127.0.0.1/tcp/1')] })
    expect(warningName(later!)).toBe(warningName(warning))
    expect(warningName(warning)).toBe('no DHT peer')
  }, 60_000)

  it('the warning: not on a local testnet, not with a DHT peer, not before the grace; without private addresses it says what else to check', () => {
    const config = resolveConfig([{ source: 'test', values: base }])
    const lan = [multiaddr('/ip4/10.77.0.10/tcp/4001')]
    const state = { peers: 1, routingTableSize: 0, connectedMs: 60_000, remoteAddrs: lan }
    expect(noDhtPeerWarning(config, state)).toContain('(10.77.0.10)')
    expect(noDhtPeerWarning({ ...config, network: { ...config.network, local_testnet: true } }, state)).toBeUndefined()
    // an exit cannot advertise itself either; a node that supplies nothing is not told so
    expect(noDhtPeerWarning(config, state)).toContain('and cannot advertise its own')
    expect(noDhtPeerWarning({ ...config, exit: { ...config.exit, enabled: false } }, state)).not.toContain('advertise')
    expect(noDhtPeerWarning(config, { ...state, routingTableSize: 1 })).toBeUndefined()
    // a DHT server whose peers are all clients is their DHT (they put their records to it)
    expect(noDhtPeerWarning(config, { ...state, dhtServer: true })).toBeUndefined()
    expect(noDhtPeerWarning(config, { ...state, peers: 0 })).toBeUndefined()
    expect(noDhtPeerWarning(config, { ...state, connectedMs: NO_DHT_PEER_GRACE_MS - 1 })).toBeUndefined()
    // a public peer (an address only classified here, never dialled), or a relayed connection only: the other causes
    const other = noDhtPeerWarning(config, { ...state, remoteAddrs: [multiaddr('/ip4/10.77.0.10/tcp/4001'), multiaddr('/ip4/81.2.69.142/tcp/4001')] })
    expect(other).toContain('may not run the DHT as servers (network.dht_server; \"auto\", the default, is a server only at a public address)')
    expect(noDhtPeerWarning(config, { ...state, remoteAddrs: [] })).toContain('may not run the DHT as servers')
  })

  it('an exit whose ad no DHT peer takes stops at once, not after the publication\'s 30 s', async () => {
    const first = await start({ region: 'de', exit: { enabled: false } })
    const exit = await start({ region: 'us', network: { bootstrap: first.status().addresses } })
    const advertising = (): any => (exit.status() as any).routing.advertising
    await waitFor(() => advertising().publishingStartedAt != null && exit.status().peers > 0, { what: 'a publication under way with a peer connected', timeoutMs: 20_000 })
    // it stays under way: the DHT has no peer to put the ad on
    await new Promise(resolve => setTimeout(resolve, 1000))
    expect(advertising().publishingStartedAt).toBeTypeOf('number')
    expect(advertising().published).toBe(false)
    const started = Date.now()
    await exit.stop()
    expect(Date.now() - started).toBeLessThan(5000)
  }, 40_000)
})
