import { describe, it, expect, afterEach } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { SparebandNode } from '../../src/node/spareband-node.ts'
import { resolveConfig } from '../../src/node/config.ts'
import { aloneWarning } from '../../src/node/alone-warning.ts'
import { loadNetworkDefinition, networkLayer } from '../../src/node/network-definition.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandConfigInput } from '../../src/index.ts'

const ALONE = /^no bootstrap peer and no relay is configured for network "spareband", and no peer is connected: this node cannot find the network on its own/

/**
 * A node with no bootstrap peer and no named relay, outside a local
 * testnet, is warned about in status (and so in the start log, which
 * prints status().warnings) while it has no peer. Real nodes on loopback.
 */
describe('the warning for a node that cannot find a network', () => {
  const nodes: SparebandNode[] = []
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => n.stop())) })

  const base = { region: 'de', listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 } }
  const start = async (config: Record<string, unknown>): Promise<SparebandNode> => {
    const node = await createSparebandNode({ dataDir: await tempDir('sb-alone-'), config: { ...base, ...config } as SparebandConfigInput })
    nodes.push(node)
    await node.start()
    return node
  }
  const alone = (node: SparebandNode): string[] => node.status().warnings.filter(w => ALONE.test(w))

  it('warns on the spareband network without bootstrap peers, and stops once a peer has found the node', async () => {
    const first = await start({})
    expect(first.status().peers).toBe(0)
    expect(alone(first)).toHaveLength(1)
    expect(alone(first)[0]).toContain('--bootstrap')
    // a second node that names it: the second is not warned, and the first, found, no longer is
    const second = await start({ network: { bootstrap: first.status().addresses } })
    expect(alone(second)).toEqual([])
    await waitFor(() => first.status().peers > 0, { what: 'the second node to connect' })
    expect(alone(first)).toEqual([])
  })

  it('warns while the control API listens beyond loopback, where only its token guards it', async () => {
    const open = await start({ api: { host: '0.0.0.0', port: 0 }, network: { local_testnet: true } })
    expect(open.status().warnings.filter(w => w.startsWith('the control API listens beyond loopback (api.host = 0.0.0.0)'))).toHaveLength(1)
    const closed = await start({ network: { local_testnet: true } })
    expect(closed.status().warnings.filter(w => w.includes('control API'))).toEqual([])
  })

  it('warns an exit that listens on nothing and announces nothing: no peer can open a tunnel to it', async () => {
    const UNREACHABLE = /^the exit is on, but this node listens on nothing and announces nothing \(listen is empty\), so no peer can open a tunnel to it; /
    const deaf = await start({ listen: [], network: { local_testnet: true } })
    expect(deaf.status().addresses).toEqual([])
    expect(deaf.status().warnings.filter(w => UNREACHABLE.test(w))).toHaveLength(1)
    // one that supplies nothing may dial out only; one that listens is reachable
    const consumerOnly = await start({ listen: [], exit: { enabled: false }, network: { local_testnet: true } })
    expect(consumerOnly.status().warnings.filter(w => UNREACHABLE.test(w))).toEqual([])
    const listening = await start({ network: { local_testnet: true } })
    expect(listening.status().warnings.filter(w => UNREACHABLE.test(w))).toEqual([])
  })

  it('does not warn a local testnet\'s first node: --network local, as spareband testnet starts it', async () => {
    const { file, definition } = loadNetworkDefinition('local')
    const config = resolveConfig([networkLayer(file, definition), { source: 'test', values: base }])
    expect(config.network.bootstrap).toEqual([])
    const node = await SparebandNode.create({ dataDir: await tempDir('sb-alone-local-'), resolvedConfig: config })
    nodes.push(node)
    await node.start()
    expect(node.status().peers).toBe(0)
    expect(alone(node)).toEqual([])
  })

  it('does not warn a node that listens through a named relay (the peer keeper dials it), nor one with bootstrap peers', () => {
    const relay = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
    const config = resolveConfig([{ source: 'test', values: base }])
    expect(aloneWarning(config, 0)).toMatch(ALONE)
    expect(aloneWarning({ ...config, listen: [...config.listen, `${relay}/p2p-circuit`] }, 0)).toBeUndefined()
    expect(aloneWarning({ ...config, network: { ...config.network, bootstrap: [relay] } }, 0)).toBeUndefined()
    // the relay search alone names no relay
    expect(aloneWarning({ ...config, listen: [...config.listen, '/p2p-circuit'] }, 0)).toMatch(ALONE)
  })
})
