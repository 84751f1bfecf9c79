/**
 * The relay every node runs drops a reservation with its peer's last
 * connection: js-libp2p kept it for its 2 h lifetime, so 32 throw-away
 * identities that reserved and left filled a relay (max_reservations) for
 * everyone else. Real nodes on loopback: a relay and exits that listen
 * through it.
 */

import { afterAll, expect, it } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { multiaddr } from '@multiformats/multiaddr'
import { relayOf } from '../../src/routing/advertised-relays.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandConfigInput, SparebandNode } from '../../src/index.ts'

const nodes: SparebandNode[] = []
afterAll(async () => { for (const n of nodes.reverse()) await n.stop().catch(() => {}) })

const base = { api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } }

async function start (config: Record<string, unknown>): Promise<SparebandNode> {
  const node = await createSparebandNode({ dataDir: await tempDir('sb-relay-res-'), config: { ...base, ...config } as SparebandConfigInput })
  nodes.push(node)
  await node.start()
  return node
}

it('a reservation goes with its peer, and its slot is free for the next one at once', async () => {
  // a relay with room for one reservation
  const relay = await start({ listen: ['/ip4/127.0.0.1/tcp/0'], exit: { enabled: false }, relay: { max_reservations: 1 } })
  const relayAddr = relay.status().addresses[0]
  const reservations = (): number => relay.status().relayService!.reservations

  const first = await start({ region: 'de', listen: [`${relayAddr}/p2p-circuit`] })
  await waitFor(() => reservations() === 1, { what: 'the first exit\'s reservation' })
  await first.stop()
  await waitFor(() => reservations() === 0, { what: 'the reservation to go with its peer', timeoutMs: 5000 })

  // the slot is free: a second exit reserves on the full-sized relay
  const second = await start({ region: 'de', listen: [`${relayAddr}/p2p-circuit`] })
  await waitFor(() => second.status().relays?.[0]?.reserved === true, { what: 'the second exit\'s reservation', timeoutMs: 15_000 })
  expect(reservations()).toBe(1)
}, 40_000)

it('an exit that comes back after a blip keeps its new reservation when the old one\'s time runs out', async () => {
  const relay = await start({ listen: ['/ip4/127.0.0.1/tcp/0'], exit: { enabled: false } })
  const relayAddr = relay.status().addresses[0]
  const exit = await start({ region: 'de', listen: [`${relayAddr}/p2p-circuit`] })
  const server = (relay.libp2p.services.relay as any).server
  await waitFor(() => server.reservations.get(exit.libp2p.peerId) != null, { what: 'the exit\'s reservation' })
  const old = server.reservations.get(exit.libp2p.peerId)
  // the old reservation's lifetime (2 h) made to end soon
  old.signal.reset(2000)
  // the blip: the exit's connections to the relay go; its keeper redials and reserves again
  for (const c of exit.libp2p.getConnections(relay.libp2p.peerId)) c.abort(new Error('a blip in the network'))
  await waitFor(() => { const r = server.reservations.get(exit.libp2p.peerId); return r != null && r !== old }, { what: 'the exit\'s new reservation', timeoutMs: 20_000 })
  const fresh = server.reservations.get(exit.libp2p.peerId)
  // past the old one's end
  await new Promise(resolve => setTimeout(resolve, 3000))
  expect(server.reservations.get(exit.libp2p.peerId)).toBe(fresh)
  expect(relay.status().relayService!.reservations).toBe(1)
}, 40_000)

it('a relay the search found and reserved on is in status (relaysFound), beside the named ones (relays)', async () => {
  const relay = await start({ listen: ['/ip4/127.0.0.1/tcp/0'], exit: { enabled: false } })
  const relayAddr = relay.status().addresses[0]
  // names no relay: searches for one, and meets this one as its bootstrap peer
  const exit = await start({ region: 'de', listen: ['/p2p-circuit'], network: { local_testnet: true, bootstrap: [relayAddr] } })
  await waitFor(() => (exit.status().relaysFound ?? []).length === 1, { what: 'the found relay in status', timeoutMs: 20_000 })
  const [found] = exit.status().relaysFound!
  expect(found.connected).toBe(true)
  expect(found.addr).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/${relayAddr.split('/')[4]}(/p2p/${relay.peerId.toString()})?$`))
  expect(exit.status().relays).toEqual([])
  expect(exit.status().addresses.some(a => a.startsWith(`${relayAddr}/p2p-circuit`))).toBe(true)
}, 40_000)

it('a searching exit reserves on as many relays as network.relay_reservations says: two by default, one when told', async () => {
  const relays = await Promise.all([0, 1].map(async () => start({ listen: ['/ip4/127.0.0.1/tcp/0'], exit: { enabled: false } })))
  const bootstrap = relays.map(r => r.status().addresses[0])
  const relayIds = relays.map(r => r.peerId.toString()).sort()
  const [two, one] = await Promise.all([
    start({ region: 'de', listen: ['/p2p-circuit'], network: { local_testnet: true, bootstrap } }),
    start({ region: 'de', listen: ['/p2p-circuit'], network: { local_testnet: true, bootstrap, relay_reservations: 1 } })
  ])
  const circuitsThrough = (n: SparebandNode): string[] => [...new Set(n.status().addresses.flatMap(a => relayOf(multiaddr(a)) ?? []))].sort()
  // a reservation on each relay, each a circuit address of its own: a consumer can dial the exit through either
  await waitFor(() => circuitsThrough(two).length === 2, { what: 'reservations on both relays', timeoutMs: 20_000 })
  expect(circuitsThrough(two)).toEqual(relayIds)
  expect((two.status().relaysFound ?? []).map(r => r.addr.split('/p2p/').at(-1)).sort()).toEqual(relayIds)
  await waitFor(() => circuitsThrough(one).length === 1, { what: 'the one reservation', timeoutMs: 20_000 })
  // time for a second reservation, were one sought: both relays are connected and have room
  await new Promise(resolve => setTimeout(resolve, 3000))
  expect(circuitsThrough(one)).toHaveLength(1)
  expect(relays.map(r => r.status().relayService!.reservations).sort()).toEqual([1, 2])
}, 60_000)

it('a reservation refreshed twice lasts its lifetime from the last refresh (libp2p\'s timer fired at the first refresh\'s end)', async () => {
  const relay = await start({ listen: ['/ip4/127.0.0.1/tcp/0'], exit: { enabled: false } })
  const relayAddr = relay.status().addresses[0]
  const exit = await start({ region: 'de', listen: [`${relayAddr}/p2p-circuit`] })
  const store = (relay.libp2p.services.relay as any).server.reservationStore
  const peer = exit.libp2p.peerId
  await waitFor(() => store.reservations.get(peer) != null, { what: 'the exit\'s reservation' })
  const reservation = store.reservations.get(peer)
  const addr = relay.libp2p.getConnections(peer)[0].remoteAddr
  // two refreshes, as the exit's RESERVE messages make them, with a short lifetime
  store.reservationTtl = 800
  const first = Date.now()
  store.reserve(peer, addr)
  await new Promise(resolve => setTimeout(resolve, 400))
  store.reserve(peer, addr)
  // past the first refresh's end (800 ms), before the second's (1200 ms)
  await new Promise(resolve => setTimeout(resolve, Math.max(0, first + 1000 - Date.now())))
  expect(store.reservations.get(peer)).toBe(reservation)
  // and it does end, at the second refresh's end
  await waitFor(() => store.reservations.get(peer) == null, { what: 'the reservation to end', timeoutMs: 5000, intervalMs: 20 })
  expect(Date.now() - first).toBeGreaterThanOrEqual(1150)
}, 40_000)
