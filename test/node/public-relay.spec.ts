/**
 * Outside a local testnet, with relay.enabled and network.dht_server at
 * "auto" (the defaults), a node relays for others and serves the DHT only
 * while it has a public address: a relay behind NAT hands out circuits
 * nobody can dial. A real node on loopback, on a network that is not a
 * local testnet, whose public address comes and goes as AutoNAT would make
 * it (the address manager's confirm and remove, which is what AutoNAT
 * calls; nothing is dialled). The namespace test (netns-public.spec) has
 * the same rule at work across a real NAT.
 */

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createSparebandNode } from '../../src/index.ts'
import { listensPublicly, ownPublicAddresses, ownPublicIPv4 } from '../../src/node/own-public-addresses.ts'
import { PUBLIC_STUN_SERVERS, dhtClientMode, libp2pListen, stunServers } from '../../src/node/libp2p.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandConfigInput, SparebandNode } from '../../src/index.ts'
import type { NetworkInterfaceInfo } from 'node:os'

const nodes: SparebandNode[] = []
afterAll(async () => { for (const n of nodes) await n.stop().catch(() => {}) })

async function start (config: SparebandConfigInput): Promise<SparebandNode> {
  const node = await createSparebandNode({
    dataDir: await tempDir('sb-public-relay-'),
    config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { enabled: false }, exit: { enabled: false }, accounting: { pow_difficulty: 8 }, ...config }
  })
  nodes.push(node)
  await node.start()
  return node
}

it('a node that gains a public address starts relaying and serving the DHT, and stops both when it loses it', async () => {
  const node = await start({ network: { name: 'not-a-testnet', local_testnet: false } })
  const changes: boolean[] = []
  node.addEventListener('relay:service', e => { changes.push(e.detail.running) })
  expect(node.status().relayService).toEqual({ running: false, reason: 'no public address', reservations: 0, circuits: 0 })
  expect(node.status().dht.mode).toBe('client')
  expect(node.libp2p.getProtocols()).not.toContain('/libp2p/circuit/relay/0.2.0/hop')

  // what AutoNAT does once peers dialled the node back at its public address
  const addressManager = (node.libp2p as any).components.addressManager
  const publicAddr = multiaddr('/ip4/11.77.0.9/tcp/4001')
  addressManager.confirmObservedAddr(publicAddr, { type: 'observed' })
  await waitFor(() => node.status().relayService?.running === true && node.status().dht.mode === 'server', { what: 'the relay and the DHT server on', timeoutMs: 10_000 })
  expect(node.status().relayService?.reason).toBe('public')
  expect(node.libp2p.getProtocols()).toContain('/libp2p/circuit/relay/0.2.0/hop')

  // a peer behind NAT reserves on it (named in its listen addresses); a bare libp2p that dials loopback
  // only: the node's identify names the made-up public address, which nothing must dial
  const nodeAddr = node.status().addresses.find(a => a.startsWith('/ip4/127.0.0.1/'))!
  const reserving = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: [`${nodeAddr}/p2p-circuit`] },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
    connectionGater: { denyDialMultiaddr: async ma => !ma.toString().startsWith('/ip4/127.0.0.1/') }
  })
  const through = (): boolean => reserving.getMultiaddrs().some(a => a.toString().includes(`/p2p/${node.peerId.toString()}/p2p-circuit`))
  await waitFor(() => node.status().relayService?.reservations === 1 && through(), { what: 'a reservation on the relay', timeoutMs: 20_000 })

  // and once they could not any more
  addressManager.removeObservedAddr(publicAddr)
  await waitFor(() => node.status().relayService?.running === false && node.status().dht.mode === 'client', { what: 'the relay and the DHT server off', timeoutMs: 10_000 })
  // relay v2 cannot end a reservation; its connection closed, the peer drops it and no longer names the circuit
  await waitFor(() => !through(), { what: 'the reserving peer to drop the circuit through it', timeoutMs: 10_000 })
  expect(node.libp2p.getProtocols()).not.toContain('/libp2p/circuit/relay/0.2.0/hop')
  expect(changes).toEqual([true, false])
  await reserving.stop()

  // a new relay each time (the library's cannot start again once stopped): on a third time, it relays
  addressManager.confirmObservedAddr(publicAddr, { type: 'observed' })
  await waitFor(() => node.status().relayService?.running === true, { what: 'the relay on again', timeoutMs: 10_000 })
  expect(node.libp2p.getProtocols()).toContain('/libp2p/circuit/relay/0.2.0/hop')
}, 30_000)

it('in a local testnet, and with relay.enabled and dht_server true, the node relays and serves the DHT at private addresses', async () => {
  const testnet = await start({ network: { local_testnet: true } })
  expect(testnet.status().relayService).toMatchObject({ running: true, reason: 'on' })
  expect(testnet.status().dht.mode).toBe('server')
  const forced = await start({ network: { name: 'not-a-testnet', local_testnet: false, dht_server: true }, relay: { enabled: true } })
  expect(forced.status().relayService).toMatchObject({ running: true, reason: 'on' })
  expect(forced.status().dht.mode).toBe('server')
  const off = await start({ network: { name: 'not-a-testnet', local_testnet: false, dht_server: false }, relay: { enabled: false } })
  expect(off.status().relayService).toBeUndefined()
  expect(off.status().dht.mode).toBe('client')
}, 30_000)

it('dht_server "auto" is kad-dht\'s own rule outside a local testnet, a server in one', () => {
  expect(dhtClientMode({ dht_server: 'auto', local_testnet: false })).toBeUndefined()
  expect(dhtClientMode({ dht_server: 'auto', local_testnet: true })).toBe(false)
  expect(dhtClientMode({ dht_server: true, local_testnet: false })).toBe(false)
  expect(dhtClientMode({ dht_server: false, local_testnet: true })).toBe(true)
})

it('stun_servers "auto" is libp2p\'s public STUN servers outside a local testnet, none in one; a list is taken as it is', () => {
  expect(stunServers({ stun_servers: 'auto', local_testnet: false })).toEqual(PUBLIC_STUN_SERVERS)
  expect(stunServers({ stun_servers: 'auto', local_testnet: true })).toEqual([])
  expect(stunServers({ stun_servers: ['stun:stun.example.org:3478'], local_testnet: true })).toEqual(['stun:stun.example.org:3478'])
  expect(stunServers({ stun_servers: [], local_testnet: false })).toEqual([])
  // the list the README names is @libp2p/webrtc's own default (it exports none): an upgrade that changes it shows here
  const constants = readFileSync(join(dirname(createRequire(import.meta.url).resolve('@libp2p/webrtc')), 'constants.js'), 'utf8')
  expect([...constants.matchAll(/'(stun:[^']+)'/g)].map(m => m[1])).toEqual(PUBLIC_STUN_SERVERS)
})

it('only public IPv4 addresses of the machine\'s own are taken without AutoNAT', () => {
  const taken = ownPublicIPv4(['/ip4/11.77.0.9/tcp/4001', '/ip4/10.0.0.2/tcp/4001', '/ip4/127.0.0.1/tcp/4001', '/ip4/100.64.1.1/tcp/4001',
    '/ip6/2001:4860::1/tcp/4001', '/ip4/11.77.0.9/udp/4001/webrtc-direct', '/ip4/11.77.0.8/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit',
    '/dns4/example.com/tcp/443'].map(a => multiaddr(a)))
  expect(taken.map(String)).toEqual(['/ip4/11.77.0.9/tcp/4001', '/ip4/11.77.0.9/udp/4001/webrtc-direct'])
})

it('a node others can dial does not search for relays: a public IPv4 address of its own, or an announced public address', () => {
  const iface = (address: string): NodeJS.Dict<NetworkInterfaceInfo[]> => ({ eth0: [{ address, family: 'IPv4', internal: false, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: `${address}/24` }] })
  const wildcard = ['/ip4/0.0.0.0/tcp/4001', '/p2p-circuit']
  expect(listensPublicly(wildcard, [], iface('11.77.1.2'))).toBe(true)
  // at home: a private address on the interface
  expect(listensPublicly(wildcard, [], iface('192.168.1.20'))).toBe(false)
  expect(listensPublicly(['/ip4/11.77.1.2/tcp/4001'], [], iface('192.168.1.20'))).toBe(true)
  expect(listensPublicly(['/ip4/10.0.0.2/tcp/4001'], [], iface('11.77.1.2'))).toBe(false)
  // what the operator announces is taken as dialable
  expect(listensPublicly(wildcard, ['/ip4/11.77.1.2/tcp/4001'], iface('192.168.1.20'))).toBe(true)
  expect(listensPublicly(wildcard, ['/dns4/exit.example.com/tcp/4001'], iface('192.168.1.20'))).toBe(true)
  expect(listensPublicly(wildcard, ['/ip4/192.168.1.20/tcp/4001'], iface('192.168.1.20'))).toBe(false)
  // the listen list libp2p gets: no search then, unless a relay is named (it searches beside it)
  expect(libp2pListen(wildcard, { searchRelays: false })).toEqual(['/ip4/0.0.0.0/tcp/4001'])
  expect(libp2pListen(wildcard, { searchRelays: true })).toEqual(wildcard)
  const named = '/ip4/11.77.1.9/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit'
  expect(libp2pListen(['/ip4/0.0.0.0/tcp/4001', named], { searchRelays: false })).toEqual(['/ip4/0.0.0.0/tcp/4001', '/p2p-circuit'])
  // one /p2p-circuit listener per relay to reserve on (network.relay_reservations), however often listen names it
  expect(libp2pListen(wildcard, { searchRelays: true, reservations: 2 })).toEqual(['/ip4/0.0.0.0/tcp/4001', '/p2p-circuit', '/p2p-circuit'])
  expect(libp2pListen([...wildcard, '/p2p-circuit', '/p2p-circuit'], { searchRelays: true, reservations: 2 })).toEqual(['/ip4/0.0.0.0/tcp/4001', '/p2p-circuit', '/p2p-circuit'])
  expect(libp2pListen([...wildcard, named], { searchRelays: false, reservations: 3 })).toEqual(['/ip4/0.0.0.0/tcp/4001', '/p2p-circuit', '/p2p-circuit', '/p2p-circuit'])
  expect(libp2pListen(wildcard, { searchRelays: false, reservations: 2 })).toEqual(['/ip4/0.0.0.0/tcp/4001'])
  // left out of listen: no search, whatever the number
  expect(libp2pListen(['/ip4/0.0.0.0/tcp/4001'], { searchRelays: true, reservations: 2 })).toEqual(['/ip4/0.0.0.0/tcp/4001'])
})

it('a public address of the machine\'s own is confirmed once: the relay transport\'s many "listening" events do not undo AutoNAT\'s later verdict', async () => {
  // the address manager and transport manager as far as the service uses them (a public interface cannot be made here)
  const events = new EventTarget() as any
  const confirmed: string[] = []
  const addrs = [multiaddr('/ip4/11.77.1.2/tcp/4001'), multiaddr('/ip4/127.0.0.1/tcp/4001')]
  const service = ownPublicAddresses()({
    events,
    transportManager: { getAddrs: () => addrs },
    addressManager: { confirmObservedAddr: (a: any) => { confirmed.push(a.toString()) } }
  }) as any
  service.start()
  service.afterStart()
  // a reservation made, refreshed, lost: each a 'listening' of the relay transport's listener
  for (let i = 0; i < 3; i++) events.dispatchEvent(new CustomEvent('transport:listening'))
  expect(confirmed).toEqual(['/ip4/11.77.1.2/tcp/4001'])
  // a new listener's public address is confirmed in its turn
  addrs.push(multiaddr('/ip4/11.77.1.2/udp/4001/webrtc-direct'))
  events.dispatchEvent(new CustomEvent('transport:listening'))
  expect(confirmed).toEqual(['/ip4/11.77.1.2/tcp/4001', '/ip4/11.77.1.2/udp/4001/webrtc-direct'])
  service.stop()
})
