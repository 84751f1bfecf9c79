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
import { RelayWatch, tcpProbe } from '../../src/node/relay-watch.ts'
import { SilentPeerError, lastHeard } from '../../src/node/silent-connections.ts'
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
  /**
   * A connection to `peer` whose muxer last heard from it at `heard`:
   * opened a minute before that unless `fresh` (opened then), at 127.0.0.1
   * unless `addr` says otherwise.
   */
  function stub (peer: string, heard: number, options: { limited?: boolean, fresh?: boolean, addr?: string, inbound?: boolean } = {}): Stub {
    const c: any = {
      id: String(++ids),
      status: 'open',
      limits: options.limited === true ? { bytes: 1n } : undefined,
      // opened at `heard` when fresh (as the relay went quiet), else a minute before
      muxer: { [Symbol.for('spareband.lastHeard')]: heard, [Symbol.for('spareband.opened')]: options.fresh === true ? heard : heard - 60_000 },
      remotePeer: peerIdFromString(peer),
      remoteAddr: multiaddr(options.limited === true ? `/ip4/127.0.0.1/tcp/1/p2p/${OTHER_RELAY}/p2p-circuit` : options.addr ?? '/ip4/127.0.0.1/tcp/1'),
      direction: options.inbound === true ? 'inbound' : 'outbound',
      abort: (err: Error) => { c.aborted = err; c.status = 'closed' }
    }
    return c
  }
  const logger = { forComponent: () => Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) } as any
  /** The node's addresses: its own, and a circuit through `RELAY` (a reservation there). */
  const addresses = [multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${SELF}`), multiaddr(`/ip4/127.0.0.1/tcp/4002/p2p/${RELAY}/p2p-circuit/p2p/${SELF}`)]

  /** `answer`: a ping of such a connection is answered at once, at the time of the sweep that sent it (`at()`), else never. */
  function watch (connections: Stub[], pinged: string[], addrs = addresses, more: { alsoWatch?: (relay: string) => boolean, gonePeers?: GonePeers, answer?: (c: Connection) => boolean, at?: () => number, probeAnswers?: boolean, probed?: string[] } = {}): RelayWatch {
    const w = new RelayWatch({ addressManager: { getAddresses: () => addrs }, connectionManager: { getConnections: () => connections }, logger }, {
      pingAfterMs: 3000,
      suspectAfterMs: 4000,
      silentAfterMs: 10_000,
      sweepIntervalMs: 1000,
      deafAfterMs: 2500,
      probeLeadMs: 2000,
      // a fresh connection to the relay's address: no answer (its host is gone) unless told otherwise
      probe: async (host, port) => { more.probed?.push(`${host}:${port}`); return more.probeAnswers === true },
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
  /** Sweeps `w` every second from `t0 + from` to `t0 + to`, `at` following. */
  async function sweeps (w: RelayWatch, t0: number, from: number, to: number, at?: { t: number }): Promise<void> {
    for (let t = from; t <= to; t += 1000) {
      if (at != null) at.t = t0 + t
      w.sweep(t0 + t)
      // a ping's end (its finally) runs between sweeps, as a second apart it would
      await new Promise(resolve => setImmediate(resolve))
    }
  }

  it('pings the reservation\'s relay when quiet, once at a time, and ends its connection when silent; leaves other peers, other relays and circuits be', async () => {
    const conns: Stub[] = []
    const pinged: string[] = []
    const w = watch(conns, pinged)
    const t0 = now()
    const relay = stub(RELAY, t0)
    const relayed = stub(RELAY, t0, { limited: true })
    const peer = stub(PEER, t0 + 500)
    const other = stub(OTHER_RELAY, t0)
    conns.push(relay, relayed, peer, other)
    await sweeps(w, t0, 1000, 2000)
    expect(pinged).toEqual([])
    w.sweep(t0 + 3000)
    expect(pinged).toEqual([relay.id])
    // suspect: the other peer heard from last is pinged as a control; its ping hangs, so the next one is; each ping once at a time
    await sweeps(w, t0, 4000, 9000)
    expect(pinged).toEqual([relay.id, peer.id, other.id])
    expect(relay.aborted).toBeUndefined()
    w.sweep(t0 + 10_000)
    expect(relay.aborted).toBeInstanceOf(SilentPeerError)
    expect(relay.aborted?.message).toBe('nothing heard from the relay for 10 s')
    expect([w.ended, w.paused]).toEqual([1, 0])
    // the peer, a relay the node holds no reservation on, and a limited connection to the relay: silent-connections.ts's 25 s
    expect([relayed, peer, other].map(c => c.aborted)).toEqual([undefined, undefined, undefined])
  })

  it('keeps a relay that answered: what comes in moves its clock', async () => {
    const conns: Stub[] = []
    const w = watch(conns, [])
    const t0 = now()
    const relay = stub(RELAY, t0)
    conns.push(relay)
    await sweeps(w, t0, 1000, 9000)
    // its answer, heard at 9.5 s
    ;(relay as any).muxer[Symbol.for('spareband.lastHeard')] = t0 + 9500
    await sweeps(w, t0, 10_000, 19_000)
    expect(relay.aborted).toBeUndefined()
    w.sweep(t0 + 19_500)
    expect(relay.aborted).toBeInstanceOf(SilentPeerError)
  })

  it('judges nothing on a late sweep (a stalled event loop): silence counts from then', async () => {
    const conns: Stub[] = []
    const pinged: string[] = []
    const w = watch(conns, pinged)
    const t0 = now()
    const relay = stub(RELAY, t0)
    conns.push(relay)
    w.sweep(t0 + 30_000)
    expect(relay.aborted).toBeUndefined()
    expect(pinged).toEqual([])
    await sweeps(w, t0, 31_000, 39_000)
    expect(relay.aborted).toBeUndefined()
    expect(pinged).toEqual([relay.id])
    w.sweep(t0 + 40_000)
    expect(relay.aborted).toBeInstanceOf(SilentPeerError)
  })

  /**
   * A watch over the relay and controls `build` makes (at `t0`, after the
   * watch started), whose pings the controls answer when `answers`: how long
   * the relay's address is paused after its verdict at 10 s.
   */
  async function verdict (build: (t0: number, at: { t: number }) => [Stub, Stub[]], answers: (c: Connection, t: number) => boolean, more: { probeAnswers?: boolean, watchFrom?: number, until?: number } = {}): Promise<{ pausedMs: number, pinged: string[], probed: string[], watch: RelayWatch, relay: Stub, controls: Stub[] }> {
    const gone = new GonePeers(20_000)
    const conns: Stub[] = []
    const pinged: string[] = []
    const at = { t: 0 }
    let relay: Stub | undefined
    const probed: string[] = []
    // watchFrom: a relay the node holds no reservation on, watched (alsoWatch) from that second of its silence on
    const alsoWatch = more.watchFrom == null ? undefined : (r: string) => r === relay?.remotePeer.toString() && at.t - t0 >= more.watchFrom!
    const w = watch(conns, pinged, alsoWatch != null ? [addresses[0]] : addresses, { gonePeers: gone, answer: c => c !== relay && answers(c, at.t - t0), at: () => at.t, probeAnswers: more.probeAnswers, probed, alsoWatch })
    const t0 = now()
    const [r, controls] = build(t0, at)
    relay = r
    conns.push(relay, ...controls)
    await sweeps(w, t0, 1000, more.until ?? 10_000, at)
    expect(relay.aborted).toBeInstanceOf(SilentPeerError)
    return { pausedMs: gone.pausedFor(relay.remoteAddr, t0 + 10_000, Date.now()), pinged, probed, watch: w, relay, controls }
  }

  it('pauses the relay\'s address when a control answered every sweep: the node\'s line worked all along', async () => {
    // an idle peer, last heard before the relay
    const { pausedMs, pinged, probed, watch, relay, controls } = await verdict(t0 => [stub(RELAY, t0), [stub(PEER, t0 - 4000)]], () => true)
    expect(pausedMs).toBeGreaterThan(19_000)
    expect(watch.paused).toBe(1)
    // a fresh connection to its address was tried once, 2 s before the verdict, and found no answer
    expect(probed).toEqual(['127.0.0.1:1'])
    // the relay at 3 s; the control at every sweep from 4 s (each answered at once)
    expect(pinged).toEqual([relay.id, ...Array(6).fill(controls[0].id)])
  })

  it('pauses nothing when the node\'s own line may have been down: no control answered, or none for 2.5 s of the stretch, or it came back only at the end', async () => {
    for (const [what, answers] of [
      ['no control answers', () => false],
      // a blip of the node's line from 5 to 8 s: the relay's connection may be waiting out TCP's retransmission timers
      ['a blip in the middle', (_c: Connection, t: number) => t < 5000 || t > 8000],
      ['answers only just before the verdict', (_c: Connection, t: number) => t >= 9000]
    ] as const) {
      const { pausedMs, watch } = await verdict(t0 => [stub(RELAY, t0), [stub(PEER, t0 - 4000)]], answers)
      expect(pausedMs, what).toBe(0)
      expect([watch.ended, watch.paused], what).toEqual([1, 0])
    }
    // a control heard all the time (its gossip, its own pings) that never answers ours: the node's outgoing half may be down
    const chatty = await verdict((t0, at) => {
      const control = stub(PEER, t0 - 4000)
      Object.defineProperty((control as any).muxer, Symbol.for('spareband.lastHeard'), { get: () => at.t })
      return [stub(RELAY, t0), [control]]
    }, () => false)
    expect(chatty.pausedMs).toBe(0)
  })

  it('takes no connection opened since the relay went quiet for a control (after a blip new ones work at once, old ones wait on TCP\'s timers), nor one on a private address for a relay at a public one', async () => {
    const fresh = await verdict(t0 => [stub(RELAY, t0), [stub(PEER, t0, { fresh: true })]], () => true)
    expect(fresh.pausedMs).toBe(0)
    // the relay's own ping alone
    expect(fresh.pinged).toEqual([fresh.relay.id])
    // the relay at a public address, the only control on the LAN: it answers through an outage of the Internet line
    const lan = await verdict(t0 => [stub(RELAY, t0, { addr: '/ip4/11.77.3.2/tcp/4001' }), [stub(PEER, t0 - 4000, { addr: '/ip4/192.168.1.7/tcp/4001' })]], () => true)
    expect(lan.pausedMs).toBe(0)
    const public_ = await verdict(t0 => [stub(RELAY, t0, { addr: '/ip4/11.77.3.2/tcp/4001' }), [stub(PEER, t0 - 4000, { addr: '/ip4/11.77.4.2/tcp/4001' })]], () => true)
    expect(public_.pausedMs).toBeGreaterThan(19_000)
  })

  it('pauses nothing when a fresh connection to the relay\'s address gets through (its old one waits on TCP\'s timers after a blip), for a connection the relay opened (its address is a port nobody dials), also for a relay found silent late in its silence (marked on the way)', async () => {
    const answered = await verdict(t0 => [stub(RELAY, t0), [stub(PEER, t0 - 4000)]], () => true, { probeAnswers: true })
    expect([answered.pausedMs, answered.watch.ended, answered.watch.paused]).toEqual([0, 1, 0])
    const inbound = await verdict(t0 => [stub(RELAY, t0, { inbound: true }), [stub(PEER, t0 - 4000)]], () => true)
    expect(inbound.pausedMs).toBe(0)
    expect(inbound.probed).toEqual([])
    // watched from its 8th second of silence only (alsoWatch, as a failover check marks it): the fresh connection settles it
    const lateAnswered = await verdict(t0 => [stub(OTHER_RELAY, t0), [stub(PEER, t0 - 4000)]], () => true, { watchFrom: 8000, probeAnswers: true })
    expect(lateAnswered.pausedMs).toBe(0)
    const lateGone = await verdict(t0 => [stub(OTHER_RELAY, t0), [stub(PEER, t0 - 4000)]], () => true, { watchFrom: 8000 })
    expect(lateGone.pausedMs).toBeGreaterThan(19_000)
    // first watched past its verdict's time: the verdict waits for the fresh connection, up to 2 s
    const past = await verdict(t0 => [stub(OTHER_RELAY, t0), [stub(PEER, t0 - 4000)]], () => true, { watchFrom: 10_000, until: 12_000 })
    expect(past.pausedMs).toBeGreaterThan(19_000)
    expect(past.probed).toHaveLength(1)
  })

  it('pauses nothing while the relay is heard on another connection', async () => {
    // the relay's second connection, heard at 9 s: it is there on another path
    const { pausedMs } = await verdict(t0 => [stub(RELAY, t0), [stub(PEER, t0 - 4000), stub(RELAY, t0 + 9000, { addr: '/ip4/127.0.0.1/tcp/2' })]], () => true)
    expect(pausedMs).toBe(0)
  })

  it('watches a relay found silent (alsoWatch) as one it holds a reservation on', async () => {
    const conns: Stub[] = []
    const pinged: string[] = []
    const w = watch(conns, pinged, [addresses[0]], { alsoWatch: relay => relay === OTHER_RELAY })
    const t0 = now()
    const other = stub(OTHER_RELAY, t0)
    const peer = stub(PEER, t0)
    conns.push(other, peer)
    await sweeps(w, t0, 1000, 10_000)
    expect(other.aborted).toBeInstanceOf(SilentPeerError)
    expect(peer.aborted).toBeUndefined()
    expect(pinged[0]).toBe(other.id)
  })

  it('watches nothing while the node holds no reservation', async () => {
    const conns: Stub[] = []
    const pinged: string[] = []
    const w = watch(conns, pinged, [addresses[0]])
    const t0 = now()
    const relay = stub(RELAY, t0)
    conns.push(relay)
    await sweeps(w, t0, 1000, 20_000)
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

    // A heard from since B came (the watch pings a relay quiet for 3 s): B was there before A went quiet, so its answers speak for the exit's line
    const since = performance.now()
    await waitFor(() => (lastHeard(toA[0]) ?? 0) > since, { what: 'A to be heard from after B came', timeoutMs: 15_000, intervalMs: 100 })
    // A's host dies: the line passes nothing, a new connection through the door is refused, and A's own port is gone
    door.silence()
    door.refuse()
    const silencedAt = performance.now()
    await a.stop()
    let reason: unknown
    toA[0].addEventListener('close', (evt: any) => { reason = evt.error }, { once: true })
    await waitFor(() => toA[0].status !== 'open', { what: 'the connection to A to end', timeoutMs: 30_000, intervalMs: 100 })
    const endedAt = performance.now()
    expect(reason).toBeInstanceOf(SilentPeerError)
    // ended by the watch of the relays the node is reached through, not at the 25 s every other connection gets
    expect((exit.libp2p.services.relayWatch as any).ended).toBe(1)
    expect((exit.libp2p.services.silentConnections as SilentConnections).ended).toBe(0)
    expect(exit.status().silentConnectionsEnded).toBe(1)
    // B answered the control pings: the exit's line worked, and A is not dialled at that address for a while
    expect((exit.libp2p.services.gonePeers as GonePeers).pausedFor(toA[0].remoteAddr)).toBeGreaterThan(15_000)

    await waitFor(() => circuitsThrough(exit).join() === b.peerId.toString(), { what: 'the reservation on B', timeoutMs: 10_000, intervalMs: 50 })
    const movedAt = performance.now()
    console.log(`relay-watch: A's connection ended ${((endedAt - silencedAt) / 1000).toFixed(1)} s after its line went dead, the reservation on B ${((movedAt - endedAt) / 1000).toFixed(2)} s after that`)
  }, 60_000)
})

describe('the fresh connection to a relay\'s address', () => {
  it('is answered by a listening port, not by one nothing listens on, nor after its time', async () => {
    const { createServer } = await import('node:net')
    const server = createServer(socket => { socket.destroy() })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    try {
      expect(await tcpProbe('127.0.0.1', port, AbortSignal.timeout(2000))).toBe(true)
    } finally {
      await new Promise(resolve => server.close(resolve))
    }
    // nothing listens there now: a dial would fail as surely
    expect(await tcpProbe('127.0.0.1', port, AbortSignal.timeout(2000))).toBe(false)
    expect(await tcpProbe('127.0.0.1', port, AbortSignal.abort())).toBe(false)
  })
})
