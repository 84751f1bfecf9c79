/**
 * libp2p refuses inbound connections once it holds maxConnections, and
 * its pruner never closes one that carries a gossipsub stream, which every
 * connection between spareband peers does: a node that had met that many
 * peers refused every new one for good. The trimmer closes connections
 * that carry only background protocols, and none that carries anything
 * else or leads to a peer kept on purpose. Real nodes on loopback with
 * gossipsub; the limit is made small.
 */

import { afterAll, expect, it } from 'vitest'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@libp2p/gossipsub'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { ConnectionTrimmer, backgroundProtocols } from '../../src/node/connection-trimmer.ts'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { waitFor } from '../utils/cli.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

const MAX = 10
const nodes: Libp2p[] = []
const held: Stream[] = []
afterAll(async () => {
  for (const s of held) s.abort(new Error('test over'))
  await Promise.all(nodes.map(async n => n.stop()))
})

async function gossipNode (connectionManager = {}): Promise<Libp2p<any>> {
  const n = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager,
    // all on 127.0.0.1: without this, gossipsub's same-IP penalty empties the mesh past 10 peers
    services: { identify: identify(), ping: ping(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, scoreParams: { IPColocationFactorWeight: 0 } }) }
  })
  nodes.push(n)
  return n
}

it('makes room for new connections, closing only those that carry nothing but background protocols', async () => {
  const node = await gossipNode({ maxConnections: MAX, inboundConnectionThreshold: Infinity, maxIncomingPendingConnections: 100 })
  await node.handle(TUNNEL_PROTOCOL, stream => { held.push(stream) })
  const connected = (peer: Libp2p): boolean => node.getConnections(peer.peerId).some(c => c.status === 'open')
  // a connection carries gossipsub's stream once the peers have identified each other
  const dialAndSettle = async (peer: Libp2p): Promise<void> => {
    await peer.dial(node.getMultiaddrs()[0])
    await waitFor(() => node.getConnections(peer.peerId).some(c => c.streams.some(s => s.protocol?.startsWith('/meshsub/') === true)), { what: 'gossipsub\'s stream on the connection' })
  }

  // kept: a tunnel on it, a keep-alive tag, a peer named in the config
  const withTunnel = await gossipNode()
  await dialAndSettle(withTunnel)
  held.push(await withTunnel.dialProtocol(node.peerId, TUNNEL_PROTOCOL))
  await waitFor(() => node.getConnections(withTunnel.peerId).some(c => c.streams.some(s => s.protocol === TUNNEL_PROTOCOL)), { what: 'the tunnel stream at the node' })
  const keptAlive = await gossipNode()
  await dialAndSettle(keptAlive)
  await node.peerStore.merge(keptAlive.peerId, { tags: { 'keep-alive-test': { value: 1 } } })
  const named = await gossipNode()
  await dialAndSettle(named)
  // and a peer in the node's gossip mesh of a topic the trimmer is told of
  const TOPIC = 'spareband/receipts/1'
  const meshPeer = await gossipNode()
  await dialAndSettle(meshPeer)
  node.services.pubsub.subscribe(TOPIC)
  meshPeer.services.pubsub.subscribe(TOPIC)
  await waitFor(() => node.services.pubsub.getMeshPeers(TOPIC).includes(meshPeer.peerId.toString()), { what: 'the mesh peer in the node\'s mesh' })

  const trimmer = new ConnectionTrimmer(node, {
    maxConnections: MAX,
    background: backgroundProtocols({ network: { dht_protocol: '/spareband/kad/1.0.0' } } as any),
    topics: [TOPIC],
    keep: new Set([named.peerId.toString()]),
    log: defaultLogger().forComponent('test'),
    // no grace here: each peer dials and is done
    graceMs: 0
  })
  trimmer.start()
  const others: Libp2p[] = []
  try {
    for (let i = 0; i < 12; i++) {
      const peer = await gossipNode()
      others.push(peer)
      await dialAndSettle(peer)
      await waitFor(() => node.getConnections().length <= trimmer.highWater, { what: 'the trimmer to make room' })
    }
    // every one of the twelve got in (libp2p alone refused inbound connections at MAX)
    expect(trimmer.closed).toBeGreaterThanOrEqual(12 + 4 - trimmer.highWater)
    expect(node.getConnections().length).toBeLessThanOrEqual(trimmer.highWater)
    expect(connected(withTunnel)).toBe(true)
    expect(connected(keptAlive)).toBe(true)
    expect(connected(named)).toBe(true)
    expect(connected(meshPeer)).toBe(true)
    // the oldest went first: those left are the newest of the twelve
    const left = others.filter(connected).length
    expect(left).toBe(node.getConnections().length - 4)
    expect(others.slice(12 - left).every(connected)).toBe(true)
  } finally {
    trimmer.stop()
  }

  // a connection in its grace is not closed: a consumer that has dialled and not yet opened its tunnel
  const before = Date.now()
  const late = await gossipNode()
  await dialAndSettle(late)
  const small = new ConnectionTrimmer(node, {
    maxConnections: 6,
    background: backgroundProtocols({ network: { dht_protocol: '/spareband/kad/1.0.0' } } as any),
    topics: [],
    keep: new Set([named.peerId.toString()]),
    log: defaultLogger().forComponent('test'),
    graceMs: 60_000,
    // every connection opened before the late one is past its grace
    now: () => before + 60_000
  })
  expect(node.getConnections().length).toBeGreaterThan(small.highWater)
  expect(await small.trim()).toBeGreaterThan(0)
  await waitFor(() => !others.some(connected), { what: 'the others\' connections closed' })
  expect(connected(late)).toBe(true)
  expect([withTunnel, keptAlive, named].every(connected)).toBe(true)
}, 60_000)
