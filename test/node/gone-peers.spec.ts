/**
 * The addresses of relays found gone are not dialled for a while
 * (src/node/gone-peers.ts; the relay watch decides when, relay-watch.spec.ts).
 * The store first, on clocks the test sets; then real libp2p nodes on
 * loopback whose gater asks it.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { GonePeers, dialledPart } from '../../src/node/gone-peers.ts'
import { dialFailure } from '../../src/relay/tunnel-client.ts'
import { waitFor } from '../utils/cli.ts'
import { forwarder } from '../utils/forwarder.ts'
import type { Libp2p, Libp2pEvents } from '@libp2p/interface'

const R = '12D3KooWCay8dU7XvhCDWqGPTeVYGhNjNQ2nUdY6XK8WtcQvsCcX'

describe('the store', () => {
  it('pauses an address, with or without its peer id, until both clocks say the pause is over', () => {
    const gone = new GonePeers(20_000)
    const t = 1_000_000
    const wall = 1_700_000_000_000
    gone.pause(R, multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${R}`), t, wall)
    expect(gone.pausedFor(multiaddr('/ip4/127.0.0.1/tcp/4001'), t + 5000, wall + 5000)).toBe(15_000)
    expect(gone.pausedFor(multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${R}`), t + 5000, wall + 5000)).toBe(15_000)
    // another address of the relay, and a circuit through it: dialled as ever (the circuit's dial of the relay meets the pause)
    expect(gone.pausedFor(multiaddr('/ip4/127.0.0.1/tcp/4002'), t + 5000, wall + 5000)).toBe(0)
    expect(gone.pausedFor(multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${R}/p2p-circuit`), t + 5000, wall + 5000)).toBe(0)
    // the machine slept 30 s: performance.now() did not move, the wall clock did
    expect(gone.pausedFor(multiaddr('/ip4/127.0.0.1/tcp/4001'), t + 6000, wall + 36_000)).toBe(0)
    expect(dialledPart(multiaddr(`/ip4/1.2.3.4/tcp/1/p2p/${R}/p2p-circuit/p2p/${R}`))).toBe(`/ip4/1.2.3.4/tcp/1/p2p/${R}/p2p-circuit`)
    // by peer, for an address given by name (the pause knows the IP the name gave): the longest of its pauses
    gone.pause(R, multiaddr('/ip4/127.0.0.1/tcp/4001'), t, wall)
    gone.pause(R, multiaddr('/ip6/::1/tcp/4001'), t + 4000, wall + 4000)
    expect(gone.pausedForPeer(R, t + 5000, wall + 5000)).toBe(19_000)
    expect(gone.pausedForPeer('12D3KooWHm3gEkq3Qw1anVg9rpBW1KfeSTrkTf1UWGUutTj38LqF', t + 5000, wall + 5000)).toBe(0)
  })

  it('a connection the relay opens to the node ends its pauses; the node\'s stop ends all', () => {
    const gone = new GonePeers(20_000)
    const events = new TypedEventEmitter<Libp2pEvents>()
    gone.withEvents(events).start()
    const addr = multiaddr('/ip4/127.0.0.1/tcp/4001')
    gone.pause(R, addr)
    expect(gone.denyDialMultiaddr(addr)).toBe(true)
    const opened = (peer: string, direction: string): void => { events.safeDispatchEvent('connection:open', { detail: { remotePeer: { toString: () => peer }, direction } as any }) }
    // another peer's connection, and one the node opened to the relay elsewhere: the paused address may still be dead
    opened('12D3KooWHm3gEkq3Qw1anVg9rpBW1KfeSTrkTf1UWGUutTj38LqF', 'inbound')
    opened(R, 'outbound')
    expect(gone.denyDialMultiaddr(addr)).toBe(true)
    opened(R, 'inbound')
    expect(gone.denyDialMultiaddr(addr)).toBe(false)
    gone.pause(R, addr)
    gone.stop()
    expect(gone.denyDialMultiaddr(addr)).toBe(false)
  })

  it('says what a dial refused for it means', () => {
    const denied = Object.assign(new Error(`The connection gater denied all addresses in the dial request for peer: ${R}`), { name: 'DialDeniedError' })
    const said = `every address of ${R} is refused here: a relay found silent is not dialled at its address for 20 s (nor, on the public network, a private address)`
    expect(dialFailure(denied)).toBe(said)
    expect(dialFailure(new AggregateError([denied, new Error('connect ECONNREFUSED 127.0.0.1:1')], 'All multiaddr dials failed'))).toBe(`All multiaddr dials failed: ${said}; connect ECONNREFUSED 127.0.0.1:1`)
  })
})

describe('real nodes', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c().catch(() => {}) })

  async function node (gone?: GonePeers): Promise<Libp2p> {
    const n = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionGater: gone != null ? { denyDialMultiaddr: gone.denyDialMultiaddr } : {},
      services: (gone != null ? { gonePeers: (c: { events: any }) => gone.withEvents(c.events) } : {}) as any
    })
    cleanups.push(async () => { await n.stop() })
    return n
  }

  it('a paused address is not dialled, the peer\'s others are; with none left the dial fails at once, saying why; the peer dialling in ends the pause', async () => {
    const gone = new GonePeers(60_000)
    const [a, b] = [await node(gone), await node()]
    // b's second address: a door that passes nothing (a dial of it would hang)
    const door = await forwarder(Number(b.getMultiaddrs()[0].toString().split('/tcp/')[1].split('/')[0]))
    cleanups.push(door.close)
    door.silence()
    const doorAddr = multiaddr(`/ip4/127.0.0.1/tcp/${door.port}`)
    await a.peerStore.merge(b.peerId, { multiaddrs: [doorAddr, b.getMultiaddrs()[0]] })
    gone.pause(b.peerId.toString(), doorAddr)
    const started = performance.now()
    const conn = await a.dial(b.peerId)
    expect(conn.remoteAddr.toString()).toBe(b.getMultiaddrs()[0].toString())
    expect(performance.now() - started).toBeLessThan(3000)
    await a.hangUp(b.peerId)

    // both addresses paused: refused at once
    gone.pause(b.peerId.toString(), b.getMultiaddrs()[0])
    const before = performance.now()
    const err = await a.dial(b.peerId).then(() => undefined, (e: any) => e)
    expect(err?.name).toBe('DialDeniedError')
    expect(dialFailure(err)).toMatch(/^every address of .* is refused here: a relay found silent/)
    expect(performance.now() - before).toBeLessThan(1000)

    // b dials a: it is there, and a may dial it again
    await b.dial(a.getMultiaddrs()[0])
    await waitFor(() => !gone.denyDialMultiaddr(b.getMultiaddrs()[0]), { what: 'the pause to end' })
    await b.hangUp(a.peerId)
    const again = await a.dial(b.getMultiaddrs()[0])
    expect(again.status).toBe('open')
  }, 30_000)
})
