/**
 * gossipsub keeps off relayed connections: a peer reached through a relay
 * has the relay's IP to gossipsub, so the exits behind a busy relay shared
 * one IP in its colocation penalty and were graylisted. Real nodes on
 * loopback built from the node's own libp2p options, and a plain relay.
 */

import { afterAll, expect, it } from 'vitest'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { libp2pOptions, pacedLibp2p } from '../../src/node/libp2p.ts'
import { defaultConfig } from '../../src/node/config.ts'
import { waitFor } from '../utils/cli.ts'
import type { Libp2p } from '@libp2p/interface'
import type { SparebandConfig } from '../../src/node/config.ts'

const nodes: Libp2p[] = []
afterAll(async () => { await Promise.all(nodes.map(async n => n.stop())) })

async function node (listen: string[]): Promise<Libp2p<any>> {
  const config = structuredClone(defaultConfig) as SparebandConfig
  config.listen = listen
  config.network.local_testnet = true
  config.network.bootstrap = []
  config.exit.enabled = false
  const n = await pacedLibp2p(libp2pOptions({ privateKey: await generateKeyPair('Ed25519'), config }))
  nodes.push(n)
  return n
}

it('a peer reached only through a relay is no gossip peer; the same peer connected directly is', async () => {
  const relay = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), relay: circuitRelayServer() }
  })
  nodes.push(relay)
  const relayAddr = relay.getMultiaddrs()[0].toString()
  // behind NAT: reachable only through the relay
  const exit = await node([`${relayAddr}/p2p-circuit`])
  await waitFor(() => exit.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit')), { what: 'the exit\'s reservation', timeoutMs: 20_000 })
  const consumer = await node(['/ip4/127.0.0.1/tcp/0'])

  const relayed = await consumer.dial(multiaddr(`${relayAddr}/p2p-circuit/p2p/${exit.peerId}`))
  expect(relayed.limits).toBeDefined()
  // time for identify and gossipsub's topology to have run on it
  await sleep(1500)
  expect(relayed.status).toBe('open')
  expect(consumer.services.pubsub.getPeers().map(String)).not.toContain(exit.peerId.toString())
  expect(exit.services.pubsub.getPeers().map(String)).not.toContain(consumer.peerId.toString())

  // a direct connection (the exit dialling out, as through its NAT) makes them gossip peers
  await exit.dial(consumer.getMultiaddrs()[0])
  await waitFor(() => consumer.services.pubsub.getPeers().map(String).includes(exit.peerId.toString()), { what: 'gossip over the direct connection', timeoutMs: 10_000 })
}, 40_000)
