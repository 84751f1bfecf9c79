/**
 * `peers()` tells each connection's direction: a peer behind NAT often has
 * two connections to us, one we dialled (through its relay) and one it
 * dialled, and `spareband peers` showed only the first one's ("outbound"
 * beside an address the peer had dialled in from). Two real nodes on
 * loopback, a connection each way.
 */
import { afterAll, expect, it } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { directionLabel } from '../../src/cli/commands/status.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'
import { multiaddr } from '@multiformats/multiaddr'

const nodes: SparebandNode[] = []
afterAll(async () => { for (const n of nodes) await n.stop().catch(() => {}) })

async function start (): Promise<SparebandNode> {
  const node = await createSparebandNode({
    dataDir: await tempDir('sb-peers-dir-'),
    controlApi: false,
    config: { listen: ['/ip4/127.0.0.1/tcp/0'], proxy: { enabled: false }, exit: { enabled: false }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } }
  })
  nodes.push(node)
  await node.start()
  return node
}

it('lists the direction of every connection to a peer, in the order of its addresses', async () => {
  const [a, b] = [await start(), await start()]
  await a.libp2p.dial(multiaddr(b.status().addresses[0]))
  // a second connection, the other way: libp2p would reuse the first without force
  await b.libp2p.dial(multiaddr(a.status().addresses[0]), { force: true })
  const entry = await waitFor(async () => (await a.peers()).find(p => p.peerId === b.peerId.toString() && p.addresses.length === 2), { what: 'two connections to b' })
  expect(entry!.directions.slice().sort()).toEqual(['inbound', 'outbound'])
  expect(entry!.direction).toBe(entry!.directions[0])
  const conns = a.libp2p.getConnections(b.peerId)
  expect(entry!.addresses).toEqual(conns.map(c => c.remoteAddr.toString()))
  expect(entry!.directions).toEqual(conns.map(c => c.direction))
  // what spareband peers shows for it
  expect(directionLabel(entry!)).toBe('both')
  expect(directionLabel({ ...entry!, directions: ['outbound', 'outbound'], limited: true })).toBe('outbound (relayed)')
})
