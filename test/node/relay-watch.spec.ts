/**
 * The relays a node is reached through are judged sooner than other peers
 * (src/node/relay-watch.ts): pinged when quiet, ended when
 * silent for 10 s. The sweep over stub connections first, on a clock the
 * test moves; then real nodes on loopback, an exit whose relay's line goes
 * dead (a TCP forwarder that passes nothing more, closing nothing).
 */

import { afterAll, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { RelayWatch } from '../../src/node/relay-watch.ts'
import { SilentPeerError } from '../../src/node/silent-connections.ts'
import { GonePeers } from '../../src/node/gone-peers.ts'
import { createSparebandNode } from '../../src/index.ts'
import { relayOf } from '../../src/routing/advertised-relays.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import { forwarder } from '../utils/forwarder.ts'
import type { Connection } from '@libp2p/interface'
import type { SilentConnections } from '../../src/node/silent-connections.ts'
import type { SparebandConfigInput, SparebandNode } from '../../src/index.ts'

const RELAY = '12D3KooWCay8dU7XvhCDWqGPTeVYGhNjNQ2nUdY6XK8WtcQvsCcX'
const OTHER_RELAY = '12D3KooWHm3gEkq3Qw1anVg9rpBW1KfeSTrkTf1UWGUutTj38LqF'
const PEER = '12D3KooWDrexMJyJTT1Zw8GiaiNWgXoKZGJQ1q7dEZLVizaD7tVs'
const SELF = '12D3KooWSNrv7aZGUtZibXYUnmLqZvu4JnaWscywSxTxdHmMhzbT'

describe('the sweep', () => {
  type Stub = Connection & { aborted?: Error }
  let ids = 0
  /** A connection to `peer` whose muxer last heard from it at `heard`. */
  function stub (peer: string, heard: number, limited = false): Stub {
    const c: any = {
      id: String(++ids),
      status: 'open',
      limits: limited ? { bytes: 1n } : undefined,
      muxer: { [Symbol.for('spareband.lastHeard')]: heard },
      remotePeer: peerIdFromString(peer),
      remoteAddr: multiaddr(limited ? `/ip4/127.0.0.1/tcp/1/p2p/${OTHER_RELAY}/p2p-circuit` : '/ip4/127.0.0.1/tcp/1'),
      abort: (err: Error) => { c.aborted = err; c.status = 'closed' }
    }
    return c
  }
  const logger = { forComponent: () => Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) } as any
  /** The node's addresses: its own, and a circuit through `RELAY` (a reservation there). */
  const addresses = [multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${SELF}`), multiaddr(`/ip4/127.0.0.1/tcp/4002/p2p/${RELAY}/p2p-circuit/p2p/${SELF}`)]

  /** `answer`: the ping is answered at once, at the time of the sweep that sent it (`at()`), else never. */
  function watch (connections: Stub[], pinged: string[], addrs = addresses, more: { alsoWatch?: (relay: string) => boolean, gonePeers?: GonePeers, answer?: (c: Connection) => boolean, at?: () => number } = {}): RelayWatch {
    const w = new RelayWatch({ addressManager: { getAddresses: () => addrs }, connectionManager: { getConnections: () => connections }, logger }, {
      pingAfterMs: 3000,
      silentAfterMs: 10_000,
      sweepIntervalMs: 1000,
      alsoWatch: more.alsoWatch,
      gonePeers: more.gonePeers,
      ping: async c => {
        pinged.push(c.id)
        if (more.answer?.(c) === true) (c as any).muxer[Symbol.for('spareband.lastHeard')] = more.at!()
        else await new Promise(() => {})
      }
    })
    w.start()
    w.stop()
    return w
  }
  /** A time no earlier than the watch's start: whole milliseconds, so that differences of sweep times are exact, as the limits' boundaries need. */
  const now = (): number => Math.ceil(performance.now())

  it('pings the reservation\'s relay when quiet, once at a time, and ends its connection when silent; leaves other peers, other relays and circuits be', () => {
    const conns: Stub[] = []
    const pinged: string[] = []
    const w = watch(conns, pinged)
    const t0 = now()
    const relay = stub(RELAY, t0)
    const relayed = stub(RELAY, t0, true)
    const peer = stub(PEER, t0 + 500)
    const other = stub(OTHER_RELAY, t0)
    conns.push(relay, relayed, peer, other)
    for (let t = 1000; t < 3000; t += 1000) w.sweep(t0 + t)
    expect(pinged).toEqual([])
    w.sweep(t0 + 3000)
    expect(pinged).toEqual([relay.id])
    // the ping is still out: no second one
    for (let t = 4000; t < 8000; t += 1000) w.sweep(t0 + t)
    expect(pinged).toEqual([relay.id])
    // 2 s before the verdict, the other peer heard from last is pinged, once: the control
    w.sweep(t0 + 8000)
    w.sweep(t0 + 9000)
    expect(pinged).toEqual([relay.id, peer.id])
    expect(relay.aborted).toBeUndefined()
    w.sweep(t0 + 10_000)
    expect(relay.aborted).toBeInstanceOf(SilentPeerError)
    expect(relay.aborted?.message).toBe('nothing heard from the relay for 10 s')
    expect(w.ended).toBe(1)
    // the peer, a relay the node holds no reservation on, and a limited connection to the relay: silent-connections.ts's 25 s
    expect([relayed, peer, other].map(c => c.aborted)).toEqual([undefined, undefined, undefined])
  })

  it('keeps a relay that answered: what comes in moves its clock', () => {
    const conns: Stub[] = []
    const w = watch(conns, [])
    const t0 = now()
    const relay = stub(RELAY, t0)
    conns.push(relay)
    for (let t = 1000; t <= 9000; t += 1000) w.sweep(t0 + t)
    // its answer, heard at 9.5 s
    ;(relay as any).muxer[Symbol.for('spareband.lastHeard')] = t0 + 9500
    for (let t = 10_000; t <= 19_000; t += 1000) w.sweep(t0 + t)
    expect(relay.aborted).toBeUndefined()
    w.sweep(t0 + 19_500)
    expect(relay.aborted).toBeInstanceOf(SilentPeerError)
  })

  it('judges nothing on a late sweep (a stalled event loop): silence counts from then', () => {
    const conns: Stub[] = []
    const pinged: string[] = []
    const w = watch(conns, pinged)
    const t0 = now()
    const relay = stub(RELAY, t0)
    conns.push(relay)
    w.sweep(t0 + 30_000)
    expect(relay.aborted).toBeUndefined()
    expect(pinged).toEqual([])
    for (let t = 31_000; t < 40_000; t += 1000) w.sweep(t0 + t)
    expect(relay.aborted).toBeUndefined()
    expect(pinged).toEqual([relay.id])
    w.sweep(t0 + 40_000)
    expect(relay.aborted).toBeInstanceOf(SilentPeerError)
  })

  it('a control that answered shows the node\'s line works: the relay is not dialled for a while; with no answer from anyone it may be at once', () => {
    for (const answers of [true, false]) {
      const conns: Stub[] = []
      const pinged: string[] = []
      const gone = new GonePeers(20_000)
      let at = 0
      // the relay never answers; the other peer does when `answers`
      const w = watch(conns, pinged, addresses, { gonePeers: gone, answer: c => answers && c.remotePeer.toString() !== RELAY, at: () => at })
      const t0 = now()
      const relay = stub(RELAY, t0)
      // an idle peer, last heard before the relay
      const peer = stub(PEER, t0 - 4000)
      conns.push(relay, peer)
      for (let t = 1000; t <= 10_000; t += 1000) { at = t0 + t; w.sweep(at) }
      expect(relay.aborted, `answers: ${answers}`).toBeInstanceOf(SilentPeerError)
      expect(pinged, `answers: ${answers}`).toEqual([relay.id, peer.id])
      expect(gone.isPaused(relay.remotePeer, t0 + 10_000), `answers: ${answers}`).toBe(answers)
      expect(gone.isPaused(relay.remotePeer, t0 + 29_999), `answers: ${answers}`).toBe(answers)
      expect(gone.isPaused(relay.remotePeer, t0 + 30_000)).toBe(false)
    }
  })

  it('watches a relay found silent (alsoWatch) as one it holds a reservation on', () => {
    const conns: Stub[] = []
    const pinged: string[] = []
    const w = watch(conns, pinged, [addresses[0]], { alsoWatch: relay => relay === OTHER_RELAY })
    const t0 = now()
    const other = stub(OTHER_RELAY, t0)
    const peer = stub(PEER, t0)
    conns.push(other, peer)
    for (let t = 1000; t <= 10_000; t += 1000) w.sweep(t0 + t)
    expect(other.aborted).toBeInstanceOf(SilentPeerError)
    expect(peer.aborted).toBeUndefined()
    expect(pinged[0]).toBe(other.id)
  })

  it('watches nothing while the node holds no reservation', () => {
    const conns: Stub[] = []
    const pinged: string[] = []
    const w = watch(conns, pinged, [addresses[0]])
    const t0 = now()
    const relay = stub(RELAY, t0)
    conns.push(relay)
    for (let t = 1000; t <= 20_000; t += 1000) w.sweep(t0 + t)
    expect(relay.aborted).toBeUndefined()
    expect(pinged).toEqual([])
  })
})

describe('an exit whose relay\'s line goes dead', () => {
  const nodes: SparebandNode[] = []
  const closers: Array<() => Promise<void>> = []
  afterAll(async () => {
    for (const n of nodes.reverse()) await n.stop().catch(() => {})
    for (const c of closers) await c()
  })
  const base = { api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } }
  async function start (config: Record<string, unknown>): Promise<SparebandNode> {
    const node = await createSparebandNode({ dataDir: await tempDir('sb-reserved-relay-'), config: { ...base, ...config } as SparebandConfigInput })
    nodes.push(node)
    await node.start()
    return node
  }
  const circuitsThrough = (n: SparebandNode): string[] => [...new Set(n.status().addresses.flatMap(a => relayOf(multiaddr(a)) ?? []))]

  it('ends the connection to it after 10 s of silence, and reserves on another relay it knows', async () => {
    const a = await start({ listen: ['/ip4/127.0.0.1/tcp/0'], exit: { enabled: false } })
    const [aAddr] = a.status().addresses
    const door = await forwarder(Number(aAddr.split('/')[4]))
    closers.push(door.close)
    // the exit meets relay A through the door only, and reserves there (one reservation)
    const exit = await start({ region: 'de', listen: ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'], network: { local_testnet: true, relay_reservations: 1, bootstrap: [`/ip4/127.0.0.1/tcp/${door.port}/p2p/${a.peerId.toString()}`] } })
    await waitFor(() => circuitsThrough(exit).join() === a.peerId.toString(), { what: 'the reservation on A', timeoutMs: 20_000 })
    // relay B dials the exit: known to it as a relay, and connected
    const b = await start({ listen: ['/ip4/127.0.0.1/tcp/0'], exit: { enabled: false } })
    await b.libp2p.dial(multiaddr(exit.status().addresses.find(x => !x.includes('/p2p-circuit'))!))
    await waitFor(async () => (await exit.libp2p.peerStore.get(b.libp2p.peerId)).protocols.includes('/libp2p/circuit/relay/0.2.0/hop'), { what: 'the exit to know B as a relay' })
    const toA = exit.libp2p.getConnections(a.libp2p.peerId)
    expect(toA.map(c => c.remoteAddr.toString())).toEqual([`/ip4/127.0.0.1/tcp/${door.port}/p2p/${a.peerId.toString()}`])

    // A's host dies: the line passes nothing, and A's own port is gone (a dial of it is refused; one through the door hangs)
    door.silence()
    const silencedAt = performance.now()
    await a.stop()
    let reason: unknown
    toA[0].addEventListener('close', (evt: any) => { reason = evt.error }, { once: true })
    await waitFor(() => toA[0].status !== 'open', { what: 'the connection to A to end', timeoutMs: 20_000, intervalMs: 100 })
    const endedAt = performance.now()
    expect(reason).toBeInstanceOf(SilentPeerError)
    // ended by the watch of the relays the node is reached through, not at the 25 s every other connection gets
    expect((exit.libp2p.services.relayWatch as any).ended).toBe(1)
    expect((exit.libp2p.services.silentConnections as SilentConnections).ended).toBe(0)
    expect(exit.status().silentConnectionsEnded).toBe(1)
    // B answered the control ping: the exit's line works, and A is not dialled for a while
    expect((exit.libp2p.services.gonePeers as GonePeers).isPaused(a.libp2p.peerId)).toBe(true)

    await waitFor(() => circuitsThrough(exit).join() === b.peerId.toString(), { what: 'the reservation on B', timeoutMs: 10_000, intervalMs: 50 })
    const movedAt = performance.now()
    console.log(`relay-watch: A's connection ended ${((endedAt - silencedAt) / 1000).toFixed(1)} s after its line went dead, the reservation on B ${((movedAt - endedAt) / 1000).toFixed(2)} s after that`)
  }, 60_000)
})
