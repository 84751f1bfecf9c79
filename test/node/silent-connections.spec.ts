/**
 * A connection the peer went silent on is ended (src/node/silent-connections.ts),
 * one merely idle or busy one way is not. Real libp2p nodes on loopback,
 * one reached through a TCP forwarder that can go silent without closing
 * anything (as a dead host or a dropped line: the connection stays up,
 * nothing comes in); the timings are shortened, the mechanism is the node's.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import { createHash } from 'node:crypto'
import { SilentConnections, SilentPeerError, lastHeard, silentConnections, withHearingClock } from '../../src/node/silent-connections.ts'
import { createSparebandNode } from '../../src/index.ts'
import { metricsHandler } from '../../src/node/metrics.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import { forwarder } from '../utils/forwarder.ts'
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'

const SILENT_MS = 3000
const PING_MS = 1000

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c().catch(() => {}) })

async function node (): Promise<Libp2p<{ ping: Ping, silentConnections: SilentConnections }>> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [withHearingClock(yamux())],
    // pings every second, and a monitor that never gives up on its own: only silence ends a connection here
    connectionMonitor: { pingInterval: PING_MS, pingTimeout: { minTimeout: 600_000 } },
    services: { ping: ping(), silentConnections: silentConnections({ silentAfterMs: SILENT_MS, sweepIntervalMs: 250 }) }
  })
  cleanups.push(async () => { await n.stop() })
  return n
}

async function silenceableForwarder (port: number): Promise<{ port: number, silence: () => void }> {
  const door = await forwarder(port)
  cleanups.push(door.close)
  return door
}

function tcpPort (n: Libp2p): number {
  return Number(n.getMultiaddrs()[0].toString().split('/tcp/')[1].split('/')[0])
}

const waitForDrain = async (s: Stream): Promise<void> => new Promise((resolve, reject) => {
  const drained = (): void => { s.removeEventListener('close', gone); resolve() }
  const gone = (): void => { s.removeEventListener('drain', drained); reject(new Error('the stream closed')) }
  s.addEventListener('drain', drained, { once: true })
  s.addEventListener('close', gone, { once: true })
})

const closed = async (c: Connection): Promise<void> => new Promise(resolve => {
  if (c.status === 'closed') resolve()
  else c.addEventListener('close', () => { resolve() }, { once: true })
})

describe('silent connections', () => {
  it('ends a connection nothing comes in on, and keeps an idle one the peer still pings on', async () => {
    const [a, b, c] = [await node(), await node(), await node()]
    const door = await silenceableForwarder(tcpPort(b))
    const toB = await a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${door.port}/p2p/${b.peerId.toString()}`))
    const toC = await a.dial(c.getMultiaddrs()[0])
    expect(lastHeard(toB)).toBeTypeOf('number')

    // both idle for twice the silence limit: the pings keep them heard from
    await new Promise(resolve => setTimeout(resolve, 2 * SILENT_MS))
    expect([toB.status, toC.status]).toEqual(['open', 'open'])
    expect(a.services.silentConnections.ended).toBe(0)

    // the line to b goes dead: nothing closes, nothing comes in
    door.silence()
    const silencedAt = performance.now()
    let reason: unknown
    toB.addEventListener('close', (evt: any) => { reason = evt.error }, { once: true })
    await closed(toB)
    const after = performance.now() - silencedAt
    expect(after).toBeGreaterThanOrEqual(SILENT_MS - 300)
    expect(a.services.silentConnections.ended).toBe(1)
    expect(reason).toBeInstanceOf(SilentPeerError)
    // the idle connection to c is still there, and works
    expect(toC.status).toBe('open')
    expect(await a.services.ping.ping(c.peerId)).toBeGreaterThanOrEqual(0)
  }, 30_000)

  it('keeps a connection busy one way: what comes back (pongs, window updates) is enough', async () => {
    const [a, b] = [await node(), await node()]
    const received = createHash('sha256')
    let got = 0
    await b.handle('/test/sink/1.0.0', async stream => {
      for await (const chunk of stream) { received.update(chunk.subarray()); got += chunk.byteLength }
    })
    const conn = await a.dial(b.getMultiaddrs()[0])
    const stream = await conn.newStream('/test/sink/1.0.0')
    const sent = createHash('sha256')
    const chunk = new Uint8Array(64 * 1024).fill(7)
    // about 13 MB/s for twice the silence limit: b sends nothing of its own, only what libp2p answers with
    const until = performance.now() + 2 * SILENT_MS
    let total = 0
    while (performance.now() < until) {
      sent.update(chunk)
      total += chunk.byteLength
      if (!stream.send(chunk)) await waitForDrain(stream)
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    await stream.close()
    await waitFor(() => got === total, { what: 'every byte at the sink', timeoutMs: 10_000 })
    expect(received.digest('hex')).toBe(sent.digest('hex'))
    expect(conn.status).toBe('open')
    expect(a.services.silentConnections.ended + b.services.silentConnections.ended).toBe(0)
  }, 30_000)
})

describe('the sweep', () => {
  /** A connection whose muxer last heard from its peer at `heard`, with its abort recorded. */
  function fakeConnection (heard: number | undefined): Connection & { aborted?: Error } {
    const muxer = heard == null ? {} : { [Symbol.for('spareband.lastHeard')]: heard }
    const c: any = { status: 'open', muxer, remotePeer: 'peer', remoteAddr: '/ip4/127.0.0.1/tcp/1', abort: (err: Error) => { c.aborted = err; c.status = 'closed' } }
    return c
  }
  const logger = { forComponent: () => Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) } as any

  it('ends only connections silent past the limit, and skips those without a clock', () => {
    // whole milliseconds: differences of the sweep times are then exact, as the limit's boundary needs
    const t0 = Math.round(performance.now())
    const conns = [fakeConnection(t0 + 1000), fakeConnection(t0 + 20_000), fakeConnection(undefined)]
    const sweeper = new SilentConnections({ connectionManager: { getConnections: () => conns }, logger }, { silentAfterMs: 25_000, sweepIntervalMs: 5000 })
    sweeper.start()
    sweeper.stop()
    // sweeps on time, every 5 s, up to 30 s after t0
    for (let t = 5000; t <= 30_000; t += 5000) sweeper.sweep(t0 + t)
    expect(conns.map(c => c.aborted?.name)).toEqual(['SilentPeerError', undefined, undefined])
    expect(conns[0].aborted?.message).toBe('nothing heard from the peer for 29 s')
    expect(sweeper.ended).toBe(1)
  })

  it('takes a late sweep (a stalled event loop, reads not yet done) for no evidence: silence counts from then', () => {
    // whole milliseconds: differences of the sweep times are then exact, as the limit's boundary needs
    const t0 = Math.round(performance.now())
    const conn = fakeConnection(t0)
    const sweeper = new SilentConnections({ connectionManager: { getConnections: () => [conn] }, logger }, { silentAfterMs: 25_000, sweepIntervalMs: 5000 })
    sweeper.start()
    sweeper.stop()
    // the loop stalled 40 s: this sweep judges nothing
    sweeper.sweep(t0 + 40_000)
    expect(conn.aborted).toBeUndefined()
    // on time again, but the reads the stall held back never come: silent 25 s from the late sweep
    for (let t = 45_000; t < 65_000; t += 5000) sweeper.sweep(t0 + t)
    expect(conn.aborted).toBeUndefined()
    sweeper.sweep(t0 + 65_000)
    expect(conn.aborted?.name).toBe('SilentPeerError')
  })
})

it('a node ends silent connections: the service runs and its muxers keep the clock', async () => {
  const n = await createSparebandNode({ dataDir: await tempDir('sb-silent-'), config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { enabled: false }, exit: { enabled: false }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } } })
  cleanups.push(async () => { await n.stop() })
  await n.start()
  const peer = await node()
  const conn = await peer.dial(multiaddr(n.status().addresses[0]))
  expect(n.libp2p.services.silentConnections).toBeInstanceOf(SilentConnections)
  await waitFor(() => n.libp2p.getConnections(peer.peerId).length > 0, { what: 'the node\'s side of the connection' })
  expect(lastHeard(n.libp2p.getConnections(peer.peerId)[0])).toBeTypeOf('number')
  expect(conn.status).toBe('open')
  expect(n.status().silentConnectionsEnded).toBe(0)
  // the node's own service, swept on a clock 30 s ahead in 5 s steps (none late): the peer has said nothing for that long
  const service = n.libp2p.services.silentConnections as SilentConnections
  const from = performance.now()
  for (let t = 5000; t <= 30_000; t += 5000) service.sweep(from + t)
  await closed(conn)
  expect(n.status().silentConnectionsEnded).toBe(1)
  // the operator sees it: status (above) and /metrics
  const text = await metricsHandler(() => n.status())()
  expect(text).toMatch(/^spareband_silent_connections_ended_total 1$/m)
  expect(text).toMatch(/^# TYPE spareband_silent_connections_ended_total counter$/m)
})
