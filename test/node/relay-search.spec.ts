/**
 * A node that looked dialable at start does not search for relays; once it
 * has had no public address for a while (AutoNAT's verdict on a firewalled
 * public IPv4, a laptop moved behind NAT) it starts the search it would
 * have run from the start (src/node/relay-search.ts). Real libp2p nodes on
 * loopback: a relay, and nodes with the service. AutoNAT's verdict is put
 * to the node's real address manager with the calls AutoNAT makes
 * (confirmObservedAddr, removeObservedAddr). The public address so
 * confirmed is a WebRTC one, and no node here has that transport: nothing
 * ever dials it.
 */

import { afterEach, expect, it } from 'vitest'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { multiaddr } from '@multiformats/multiaddr'
import { setTimeout as sleep } from 'node:timers/promises'
import { defaultLogger } from '@libp2p/logger'
import { RelaySearch, relaySearch } from '../../src/node/relay-search.ts'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { RelaySearchInit } from '../../src/node/relay-search.ts'
import type { Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const SEARCH_AFTER_MS = 400
/** Public by libp2p's rule, and undialable by any node here (none has WebRTC). */
const PUBLIC = multiaddr('/ip4/11.22.33.44/udp/4001/webrtc-direct')

interface AddressManager { addObservedAddr: (a: Multiaddr) => void, confirmObservedAddr: (a: Multiaddr, options?: { type: 'observed' }) => void, removeObservedAddr: (a: Multiaddr) => void }

/**
 * What identify (a peer saw us at PUBLIC) and then AutoNAT (its dial-backs
 * worked) tell the address manager. Typed as observed: the manager takes
 * an address it saw before for old news, and would not list it again.
 */
function confirmed (addresses: AddressManager): void {
  addresses.addObservedAddr(PUBLIC)
  addresses.confirmObservedAddr(PUBLIC, { type: 'observed' })
}

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c().catch(() => {}) })

async function relay (): Promise<Libp2p> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), relay: circuitRelayServer() }
  })
  cleanups.push(async () => n.stop())
  return n
}

/** A node with the service, listening on loopback only (no `/p2p-circuit`), and its address manager. */
async function searcher (mode: RelaySearchInit['mode'], searchAfterMs = SEARCH_AFTER_MS): Promise<{ node: Libp2p<{ relaySearch: RelaySearch }>, addresses: AddressManager }> {
  let addresses: AddressManager | undefined
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      relaySearch: relaySearch({ mode, searchAfterMs }),
      // the node's own address manager, to say what AutoNAT would
      addressesOf: (components: { addressManager: AddressManager }) => { addresses = components.addressManager; return {} }
    }
  })
  cleanups.push(async () => node.stop())
  return { node: node as unknown as Libp2p<{ relaySearch: RelaySearch }>, addresses: addresses! }
}

const circuits = (n: Libp2p): string[] => n.getMultiaddrs().map(String).filter(a => a.includes('/p2p-circuit'))

it('a node with no public address searches once the wait is over, and reserves on the relay it is connected to', async () => {
  const r = await relay()
  const { node } = await searcher('if not public')
  await node.dial(r.getMultiaddrs()[0])
  expect(node.services.relaySearch.status()).toEqual({ searching: false, reason: 'public address' })
  await waitFor(() => circuits(node).length > 0, { what: 'a reservation on the relay', timeoutMs: 15_000 })
  expect(circuits(node).every(a => a.includes(r.peerId.toString()))).toBe(true)
  const s = node.services.relaySearch.status()
  expect(s).toMatchObject({ searching: true, reason: 'public address lost' })
  expect(Date.parse(s.since!)).toBeGreaterThan(Date.now() - 20_000)
})

it('a node with a public address does not search, and does once AutoNAT takes it back', async () => {
  const r = await relay()
  const { node, addresses } = await searcher('if not public')
  // AutoNAT's dial-backs worked, within the wait that started at start
  confirmed(addresses)
  await node.dial(r.getMultiaddrs()[0])
  await sleep(3 * SEARCH_AFTER_MS)
  expect(circuits(node)).toEqual([])
  expect(node.getMultiaddrs().map(String)).toContain(`${PUBLIC.toString()}/p2p/${node.peerId.toString()}`)
  expect(node.services.relaySearch.status()).toEqual({ searching: false, reason: 'public address' })
  // eight failed: the address is not dialable after all
  addresses.removeObservedAddr(PUBLIC)
  await waitFor(() => circuits(node).length > 0, { what: 'a reservation on the relay', timeoutMs: 15_000 })
  expect(node.services.relaySearch.status().reason).toBe('public address lost')
})

it('the wait is for an address gone that long on end: one that came back meanwhile starts it over', async () => {
  // longer than the address manager's 1 s debounce of its updates, so each change below is heard before the next
  const wait = 2500
  const r = await relay()
  const { node, addresses } = await searcher('if not public', wait)
  confirmed(addresses)
  await node.dial(r.getMultiaddrs()[0])
  // past the wait that started with the node (before the address was confirmed)
  await sleep(wait + 500)
  const t0 = performance.now()
  addresses.removeObservedAddr(PUBLIC)
  await sleep(1200)
  confirmed(addresses)
  await sleep(1200)
  addresses.removeObservedAddr(PUBLIC)
  // past when a wait counted from the first removal would have ended, 2.4 s into the second gap's wait
  await sleep(t0 + 1000 + wait + 1000 - performance.now())
  expect(circuits(node)).toEqual([])
  expect(node.services.relaySearch.status().searching).toBe(false)
  // the second gap's own wait ends
  await waitFor(() => circuits(node).length > 0, { what: 'a reservation on the relay', timeoutMs: 15_000 })
  expect(node.services.relaySearch.status().reason).toBe('public address lost')
})

it('sees an address gone without an event (an interface that went away under a wildcard listener) by looking now and then', async () => {
  // the address manager and transport manager as far as the service uses them: a real one cannot lose
  // an interface here, and its wildcard listener's addresses change with no event when one goes
  let addrs = [multiaddr('/ip4/11.22.33.44/tcp/4001'), multiaddr('/ip4/127.0.0.1/tcp/4001')]
  const listened: string[] = []
  const service = relaySearch({ mode: 'if not public', searchAfterMs: 300, lookEveryMs: 100, reservations: 2 })({
    events: new EventTarget() as any,
    addressManager: { getAddresses: () => addrs },
    transportManager: { listen: async (a: Multiaddr[]) => { listened.push(...a.map(String)) } },
    logger: defaultLogger()
  })
  service.start()
  service.afterStart()
  cleanups.push(async () => { service.stop() })
  await sleep(600)
  expect(listened).toEqual([])
  addrs = [multiaddr('/ip4/127.0.0.1/tcp/4001')]
  await waitFor(() => listened.length > 0, { what: 'the search to start', timeoutMs: 3000 })
  // one listener per relay to reserve on (network.relay_reservations)
  expect(listened).toEqual(['/p2p-circuit', '/p2p-circuit'])
  expect(service.status().reason).toBe('public address lost')
})

it('a node whose listen leaves /p2p-circuit out never searches', async () => {
  const r = await relay()
  const { node } = await searcher('never')
  await node.dial(r.getMultiaddrs()[0])
  await sleep(3 * SEARCH_AFTER_MS)
  expect(circuits(node)).toEqual([])
  expect(node.services.relaySearch.status()).toEqual({ searching: false, reason: 'not in listen' })
})

it('a node says in status whether it searches, from its listen list', async () => {
  const base = { api: { port: 0 }, proxy: { enabled: false }, exit: { enabled: false }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } }
  const searching = await createSparebandNode({ dataDir: await tempDir('sb-search-'), config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'] } })
  const not = await createSparebandNode({ dataDir: await tempDir('sb-search-'), config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0'] } })
  cleanups.push(async () => searching.stop(), async () => not.stop())
  await searching.start()
  await not.start()
  expect(searching.status().relaySearch).toEqual({ searching: true, reason: 'from start' })
  expect(not.status().relaySearch).toEqual({ searching: false, reason: 'not in listen' })
})
