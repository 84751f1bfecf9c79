/**
 * An exit behind NAT is reached only through its relay, so every consumer's
 * connection comes to it from the relay's address. libp2p limits new
 * inbound connections per host (5 a second outside a local testnet) and
 * in their handshake at once (10): a burst of consumers after the exit was
 * advertised mostly timed out. The limits are raised for it.
 * Real nodes on loopback: a relay, an exit built from the node's own libp2p
 * options as on the public network, and twelve consumers.
 */

import { afterAll, expect, it } from 'vitest'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { INBOUND_PER_HOST_PER_SECOND, libp2pOptions, pacedLibp2p } from '../../src/node/libp2p.ts'
import { defaultConfig } from '../../src/node/config.ts'
import type { SparebandConfig } from '../../src/node/config.ts'
import { waitFor } from '../utils/cli.ts'
import type { Libp2p } from '@libp2p/interface'

/** A burst within the per-host limit, more than libp2p's defaults let through. */
const CONSUMERS = Math.min(12, INBOUND_PER_HOST_PER_SECOND)

const nodes: Libp2p[] = []
afterAll(async () => { await Promise.all(nodes.map(async n => n.stop())) })

async function plain (relayServer = false): Promise<Libp2p> {
  const n = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: relayServer ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // the consumers all come from 127.0.0.1 here, from hosts of their own in the field: the relay takes them all
    connectionManager: relayServer ? { inboundConnectionThreshold: Infinity, maxIncomingPendingConnections: 100 } : {},
    services: { identify: identify(), ...(relayServer ? { relay: circuitRelayServer() } : {}) } as Record<string, any>
  })
  nodes.push(n)
  return n
}

it('a burst of consumers through the relay all reach an exit behind NAT', async () => {
  const relay = await plain(true)
  const relayAddr = relay.getMultiaddrs()[0].toString()
  const config = structuredClone(defaultConfig) as SparebandConfig
  // as on the public network: inbound limits per host on
  config.network.local_testnet = false
  config.network.bootstrap = []
  config.listen = [`${relayAddr}/p2p-circuit`]
  config.exit.enabled = false
  const exit = await pacedLibp2p(libp2pOptions({ privateKey: await generateKeyPair('Ed25519'), config }))
  nodes.push(exit)
  await waitFor(() => exit.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit')), { what: 'the exit\'s reservation on the relay', timeoutMs: 20_000 })

  const consumers = await Promise.all(Array.from({ length: CONSUMERS }, async () => plain()))
  const through = multiaddr(`${relayAddr}/p2p-circuit/p2p/${exit.peerId}`)
  const dials = await Promise.allSettled(consumers.map(async c => c.dial(through, { signal: AbortSignal.timeout(15_000) })))
  const failed = dials.flatMap((d, i) => d.status === 'rejected' ? [`consumer ${i}: ${String(d.reason?.message ?? d.reason)}`] : [])
  expect(failed).toEqual([])
  // the exit's side: each consumer on a relayed connection
  const relayedAtExit = (): number => consumers.filter(c => exit.getConnections(c.peerId).some(conn => conn.status === 'open' && conn.limits != null)).length
  await waitFor(() => relayedAtExit() === CONSUMERS, { what: 'every consumer\'s connection at the exit', timeoutMs: 10_000 })
    .catch(err => { throw new Error(`${err.message}: ${relayedAtExit()} of ${CONSUMERS}; at the consumers: ${JSON.stringify(consumers.map(c => c.getConnections(exit.peerId).map(conn => conn.status)))}`) })
}, 60_000)
