/**
 * A peer whose connection was ended for silence is not dialled for a while,
 * when the node heard other peers meanwhile (src/node/gone-peers.ts). The
 * rules first, on a clock the test sets; then real libp2p nodes on
 * loopback, one reached through a TCP forwarder that goes silent.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { TypedEventEmitter } from 'main-event'
import { GonePeers, HEARD_OTHERS_WITHIN_MS } from '../../src/node/gone-peers.ts'
import { silentConnections, withHearingClock } from '../../src/node/silent-connections.ts'
import { dialFailure } from '../../src/relay/tunnel-client.ts'
import { waitFor } from '../utils/cli.ts'
import { forwarder } from '../utils/forwarder.ts'
import type { Connection, Libp2p, Libp2pEvents } from '@libp2p/interface'
import type { SilentConnections } from '../../src/node/silent-connections.ts'

const A = peerIdFromString('12D3KooWCay8dU7XvhCDWqGPTeVYGhNjNQ2nUdY6XK8WtcQvsCcX')
const B = peerIdFromString('12D3KooWHm3gEkq3Qw1anVg9rpBW1KfeSTrkTf1UWGUutTj38LqF')

/** A connection to `peer` last heard from at `heard`. */
const heardAt = (peer: typeof A, heard: number, remoteAddr = multiaddr('/ip4/127.0.0.1/tcp/1')): Connection => ({ remotePeer: peer, remoteAddr, muxer: { [Symbol.for('spareband.lastHeard')]: heard } }) as any

describe('the rules', () => {
  it('pauses a peer only when another was heard from lately, for the pause, and a connection from it ends the pause', async () => {
    const gone = new GonePeers(20_000)
    const events = new TypedEventEmitter<Libp2pEvents>()
    gone.withEvents(events).start()
    const t = 1_000_000
    // the other peer last heard longer ago than the window: the node's own line may be down
    const toA = heardAt(A, t - 25_000)
    expect(gone.found(toA, [toA, heardAt(B, t - HEARD_OTHERS_WITHIN_MS)], t)).toBe(false)
    expect(gone.isPaused(A, t)).toBe(false)
    // the peer judged itself does not count as evidence
    expect(gone.found(toA, [toA, heardAt(A, t - 1)], t)).toBe(false)
    // a relayed connection: its relay may be what went silent
    const relayed = heardAt(A, t - 25_000, multiaddr(`/ip4/127.0.0.1/tcp/1/p2p/${B.toString()}/p2p-circuit`))
    expect(gone.found(relayed, [relayed, heardAt(B, t - 1)], t)).toBe(false)
    // heard within the window (or a shorter one given)
    expect(gone.found(toA, [toA, heardAt(B, t - 4000)], t, 5000)).toBe(true)
    expect(gone.isPaused(A, t + 19_999)).toBe(true)
    expect(gone.denyDialPeer(B)).toBe(false)
    expect(gone.isPaused(A, t + 20_000)).toBe(false)
    // paused again, until A opens a connection to the node
    gone.found(toA, [heardAt(B, performance.now())])
    expect(gone.denyDialPeer(A)).toBe(true)
    events.safeDispatchEvent('connection:open', { detail: { remotePeer: A } as any })
    expect(gone.denyDialPeer(A)).toBe(false)
    gone.stop()
  })

  it('says what a dial refused for it means', () => {
    const denied = Object.assign(new Error('The dial request is blocked by gater.allowDialPeer'), { name: 'DialDeniedError' })
    expect(dialFailure(denied)).toBe('the exit or its relay went silent lately and is not dialled for 20 s')
    expect(dialFailure(new AggregateError([denied, new Error('connect ECONNREFUSED 127.0.0.1:1')], 'All multiaddr dials failed'))).toBe('All multiaddr dials failed: the exit or its relay went silent lately and is not dialled for 20 s; connect ECONNREFUSED 127.0.0.1:1')
  })
})

describe('real nodes', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c().catch(() => {}) })

  /** A node whose silent connections end after 3 s and whose gater asks `gone`; pings every second (so a working line is heard within 1.5 s, and one cut at a silence's start is not at its end). */
  async function node (gone?: GonePeers): Promise<Libp2p<{ silentConnections: SilentConnections }>> {
    const n = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [withHearingClock(yamux())],
      connectionMonitor: { pingInterval: 1000, pingTimeout: { minTimeout: 600_000 } },
      connectionGater: gone != null ? { denyDialPeer: gone.denyDialPeer } : {},
      services: {
        ping: ping(),
        silentConnections: silentConnections({ silentAfterMs: 3000, sweepIntervalMs: 250, gonePeers: gone, heardOthersWithinMs: 1500 }),
        ...(gone != null ? { gonePeers: (c: { events: any }) => gone.withEvents(c.events) } : {})
      }
    })
    cleanups.push(async () => { await n.stop() })
    return n
  }
  const port = (n: Libp2p): number => Number(n.getMultiaddrs()[0].toString().split('/tcp/')[1].split('/')[0])
  const closed = async (c: Connection): Promise<void> => { await waitFor(() => c.status !== 'open', { what: 'the connection to end', timeoutMs: 10_000, intervalMs: 50 }) }

  it('a peer gone silent while others answer is refused at once for the pause, though it answers on another address; it dialling back ends the pause', async () => {
    const gone = new GonePeers(60_000)
    const [a, b, c] = [await node(gone), await node(), await node()]
    const door = await forwarder(port(b))
    cleanups.push(door.close)
    const toB = await a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${door.port}/p2p/${b.peerId.toString()}`))
    await a.dial(c.getMultiaddrs()[0])
    door.silence()
    await closed(toB)
    expect(a.services.silentConnections.ended).toBe(1)
    expect(gone.isPaused(b.peerId)).toBe(true)
    // b is alive at its own address, but a does not dial it: refused before any connection is tried
    const started = performance.now()
    const err = await a.dial(b.getMultiaddrs()[0]).then(() => undefined, (e: any) => e)
    expect(err?.name).toBe('DialDeniedError')
    expect(dialFailure(err)).toMatch(/went silent lately/)
    expect(performance.now() - started).toBeLessThan(1000)
    // b dials a: it is there, and a may dial it again
    await b.dial(a.getMultiaddrs()[0])
    await waitFor(() => !gone.isPaused(b.peerId), { what: 'the pause to end' })
    await b.hangUp(a.peerId)
    const again = await a.dial(b.getMultiaddrs()[0])
    expect(again.status).toBe('open')
  }, 30_000)

  it('with nothing heard from anyone (the node\'s own line down), silent peers may be dialled again at once', async () => {
    const gone = new GonePeers(60_000)
    const [a, b, c] = [await node(gone), await node(), await node()]
    const doors = [await forwarder(port(b)), await forwarder(port(c))]
    for (const d of doors) cleanups.push(d.close)
    const conns = [await a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${doors[0].port}/p2p/${b.peerId.toString()}`)), await a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${doors[1].port}/p2p/${c.peerId.toString()}`))]
    for (const d of doors) d.silence()
    for (const conn of conns) await closed(conn)
    expect(a.services.silentConnections.ended).toBe(2)
    expect([gone.isPaused(b.peerId), gone.isPaused(c.peerId)]).toEqual([false, false])
    const again = await a.dial(b.getMultiaddrs()[0])
    expect(again.status).toBe('open')
  }, 30_000)
})
