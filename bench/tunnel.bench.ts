/**
 * Tunnel bench: what a spareband tunnel costs next to a bare libp2p stream.
 *
 * 1. bare libp2p stream (TCP + noise + yamux, send()/'drain'), 256 MiB, SHA-256 checked;
 * 2. SOCKS5 tunnel on a direct consumer -> exit connection, 256 MiB down and up,
 *    counted and SHA-256 checked at the far end;
 * 3. the same with the exit reachable only through a circuit relay;
 * 4. time to first byte of a small HTTP GET, direct vs tunnelled (new connection each);
 * 5. exit memory with 1,000 idle tunnels open;
 * plus two checks that are not targets: backpressure towards slow readers
 * (the tunnel must survive and stay bounded), and the direct tunnel with
 * accounting on (receipts), as a node runs by default.
 *
 * Placement: the exit (and the relay) run in child processes
 * (bench/exit-process.ts), since a node is its own process in production and
 * the bare baseline is measured the same way (source node in a child, sink in
 * the bench). The consumer runs in the bench's process; for the throughput
 * figures the SOCKS5 client runs beside it and the data target beside the
 * exit (see startLoad for the other placements); TTFB, slow readers and
 * memory use client and targets in the bench's process.
 * SPAREBAND_BENCH_EXIT_PLACEMENT=in-process puts the exit and the bare source
 * in the bench's process instead, for comparison: one event loop then does
 * the work of two.
 * Throughput is the median of SPAREBAND_BENCH_ROUNDS rounds (default 5),
 * each also given as CPU ms per MiB summed over the processes it ran through
 * (steadier than MB/s when processes share two cores);
 * each round runs bare, tunnel download and tunnel upload back to back, so
 * load from elsewhere on the machine hits all three alike.
 *
 * `npm run bench`, or `node dist/bench/tunnel.bench.js` after `npm run build`.
 * The tunnel figures are measured with accounting off, the 'accounting'
 * section with the node's defaults.
 *
 * Environment: SPAREBAND_BENCH_MIB (payload per transfer, default 256),
 * SPAREBAND_BENCH_ROUNDS (default 5), SPAREBAND_BENCH_TUNNELS (default 1000),
 * SPAREBAND_BENCH_SECTIONS (a comma-separated subset of
 * bare,direct,ttfb,slow,relay,accounting,memory; default all),
 * SPAREBAND_BENCH_CHILD_ARGS (node flags for the children, e.g. --cpu-prof),
 * SPAREBAND_BENCH_LOAD_PLACEMENT (split, in-process or child: where the
 * throughput figures' client and data target run; see startLoad),
 * SPAREBAND_BENCH_STRICT=1 (exit 1 when a target is missed; by default only
 * errors, such as a hash mismatch, fail the bench).
 */

import { availableParallelism, loadavg } from 'node:os'
import { pathToFileURL } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { TUNNEL_PROTOCOL } from '../src/constants.ts'
import { parseAgent } from '../src/relay/exit-selector.ts'
import { MiB, KiB, expectedSha256 } from './lib/data.ts'
import { createBareNode, pullFromSource } from './lib/bare.ts'
import type { Muxer } from './lib/bare.ts'
import { ChildNode, InProcessNode, openNode } from './lib/node-handle.ts'
import { measured, thisProcess } from './lib/cpu.ts'
import type { CpuSource } from './lib/cpu.ts'
import { Report, mbps, median, percentile } from './lib/report.ts'
import { socks5Connect } from './lib/socks5-client.ts'
import type { Socks5Timings } from './lib/socks5-client.ts'
import { connectDirect, download, startDataServer, startHoldServer, startHttpServer, upload } from './lib/targets.ts'
import type { NodeHandle } from './lib/node-handle.ts'
import type { DataTarget, HoldTarget, SlowReader, Target, TransferOptions, TransferResult } from './lib/targets.ts'
import type { SparebandConfigInput, SparebandNode } from '../src/index.ts'
import type { Socket } from 'node:net'

const TOTAL = Number(process.env.SPAREBAND_BENCH_MIB ?? 256) * MiB
const ROUNDS = Math.max(1, Number(process.env.SPAREBAND_BENCH_ROUNDS ?? 5))
const WARMUP = Math.min(32 * MiB, TOTAL)
const TUNNELS = Number(process.env.SPAREBAND_BENCH_TUNNELS ?? 1000)
const TTFB_REQUESTS = 200
const TTFB_WARMUP = 20
const ACCOUNTING_TTFB_REQUESTS = 50
const OPEN_CONCURRENCY = 100

const TARGET_THROUGHPUT_RATIO = 0.8
const TARGET_TTFB_OVERHEAD_MS = 2
const TARGET_KIB_PER_TUNNEL = 64

type Placement = NodeHandle['where']

const SECTIONS = new Set((process.env.SPAREBAND_BENCH_SECTIONS ?? 'bare,direct,ttfb,slow,relay,accounting,memory').split(',').map(x => x.trim()))
const runs = (section: string): boolean => SECTIONS.has(section)

const r = new Report('tunnel', 48)

/** Resources to release however the bench ends. */
const cleanups: Array<() => Promise<unknown>> = []
async function cleanupAll (): Promise<void> {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => {})
}

function check (what: string, res: TransferResult, total: number): void {
  if (res.bytes !== total) throw new Error(`${what}: received ${res.bytes} bytes, expected ${total}`)
  const want = expectedSha256(total)
  if (res.sha256 !== want) throw new Error(`${what}: SHA-256 ${res.sha256} does not match ${want}`)
}

// ---------------------------------------------------------------- configs

interface Ports { data: number, http: number, hold: number, loadData: number }

function baseConfig (bootstrap: string[], accounting = false): SparebandConfigInput {
  return {
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: { port: 0 },
    proxy: { socks_port: 0, http_port: 0 },
    network: { local_testnet: true, bootstrap },
    // the tunnel alone; the 'accounting' section measures the path with receipts
    accounting: { enabled: accounting }
  }
}

function consumerConfig (bootstrap: string[], accounting = false): SparebandConfigInput {
  return { ...baseConfig(bootstrap, accounting), exit: { enabled: false }, relay: { enabled: false } }
}

function exitConfig (ports: Ports, listen?: string[], bootstrap: string[] = [], accounting = false): SparebandConfigInput {
  return {
    ...baseConfig(bootstrap, accounting),
    ...(listen != null ? { listen } : {}),
    relay: { enabled: false },
    exit: {
      allow_private_targets: true,
      allowed_ports: [ports.data, ports.http, ports.hold, ports.loadData].filter(p => p > 0),
      // one consumer opens every tunnel here; the default allows it 256
      max_tunnels: Math.max(1024, TUNNELS + 64),
      max_tunnels_per_consumer: Math.max(1024, TUNNELS + 64)
    }
  }
}

function relayConfig (): SparebandConfigInput {
  // the default relay section: enabled, 1024 MiB / 3600 s per relayed connection
  return { ...baseConfig([]), exit: { enabled: false } }
}

// ---------------------------------------------------------------- helpers

async function waitFor<T> (what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (err) { last = err }
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}${last != null ? `: ${String(last)}` : ''}`)
}

/** Waits until identify has told the consumer that `exitId` is an exit speaking the tunnel protocol. */
async function waitUntilExitKnown (consumer: SparebandNode, exitId: string): Promise<void> {
  await waitFor(`the consumer to learn exit ${exitId}`, async () => {
    const peer = (await consumer.libp2p.peerStore.all()).find(p => p.id.toString() === exitId)
    if (peer == null || !peer.protocols.includes(TUNNEL_PROTOCOL)) return false
    const agent = peer.metadata.get('AgentVersion')
    return agent != null && parseAgent(new TextDecoder().decode(agent)).exit
  })
}

interface Scenario {
  consumer: SparebandNode
  socksPort: number
  exit: NodeHandle
  exitId: string
  relay?: NodeHandle
  /** The data target in the exit's process, when the load is split (see startLoad). */
  dataPortBesideExit?: number
  close: () => Promise<void>
}

/** Starts a data target in the exit's process before the exit itself, so the exit can allow its port. */
async function targetBesideExit (exit: NodeHandle, ports: Ports): Promise<{ ports: Ports, dataPortBesideExit?: number }> {
  if (LOAD_PLACEMENT !== 'split') return { ports }
  const { port } = await exit.call<{ port: number }>('data-server')
  return { ports: { ...ports, loadData: port }, dataPortBesideExit: port }
}

async function startConsumer (bootstrap: string[], accounting = false, listen?: string[]): Promise<{ handle: InProcessNode, node: SparebandNode, socksPort: number }> {
  const handle = new InProcessNode()
  cleanups.push(async () => handle.close())
  const started = await handle.start({ ...consumerConfig(bootstrap, accounting), ...(listen != null ? { listen } : {}) })
  if (started.socksPort == null || started.socksPort === 0) throw new Error('consumer has no SOCKS5 port in status().proxy')
  return { handle, node: handle.host.node!, socksPort: started.socksPort }
}

async function directScenario (ports: Ports, placement: Placement, accounting = false): Promise<Scenario> {
  const exit = await openNode(placement)
  cleanups.push(async () => exit.close())
  const beside = await targetBesideExit(exit, ports)
  const e = await exit.start(exitConfig(beside.ports, undefined, [], accounting))
  const exitAddr = `${e.addresses[0]}`
  const consumer = await startConsumer([exitAddr], accounting)
  await consumer.node.libp2p.dial(multiaddr(exitAddr))
  await waitUntilExitKnown(consumer.node, e.peerId)
  return {
    consumer: consumer.node,
    socksPort: consumer.socksPort,
    exit,
    exitId: e.peerId,
    dataPortBesideExit: beside.dataPortBesideExit,
    close: async () => { await consumer.handle.close(); await exit.close() }
  }
}

/** The exit must be reachable only through the relay, before the transfers and after them. */
function assertOnlyRelayed (consumer: SparebandNode, exitId: string): void {
  const conns = consumer.libp2p.getConnections().filter(c => c.remotePeer.toString() === exitId)
  if (conns.length === 0 || conns.some(c => !c.remoteAddr.toString().includes('/p2p-circuit'))) {
    throw new Error(`consumer -> exit should be relayed only, got ${conns.map(c => c.remoteAddr.toString()).join(', ')}`)
  }
}

async function relayScenario (ports: Ports): Promise<Scenario> {
  const relay = await ChildNode.spawn()
  cleanups.push(async () => relay.close())
  const rl = await relay.start(relayConfig())
  const relayAddr = rl.addresses.find(a => a.includes('/tcp/') && !a.includes('p2p-circuit'))!
  const exit = await ChildNode.spawn()
  cleanups.push(async () => exit.close())
  const beside = await targetBesideExit(exit, ports)
  const e = await exit.start(exitConfig(beside.ports, [`${relayAddr}/p2p-circuit`], [relayAddr]))
  // a consumer that listens on nothing: with an address the exit could dial,
  // DCUtR would upgrade the connection and the tunnels would go direct
  const consumer = await startConsumer([relayAddr], false, [])
  const circuit = `${relayAddr}/p2p-circuit/p2p/${e.peerId}`
  await consumer.node.libp2p.dial(multiaddr(circuit))
  await waitUntilExitKnown(consumer.node, e.peerId)
  assertOnlyRelayed(consumer.node, e.peerId)
  return {
    consumer: consumer.node,
    socksPort: consumer.socksPort,
    exit,
    exitId: e.peerId,
    relay,
    dataPortBesideExit: beside.dataPortBesideExit,
    close: async () => { await consumer.handle.close(); await exit.close(); await relay.close() }
  }
}

async function tunnelTransfer (s: Scenario, dataPort: number, direction: 'download' | 'upload', total: number, options: TransferOptions & { onBytes?: (n: number) => void } = {}): Promise<TransferResult> {
  const socket = await socks5Connect(s.socksPort, '127.0.0.1', dataPort)
  try {
    return direction === 'download' ? await download(socket, total, options) : await upload(socket, total, options)
  } catch (err: any) {
    throw new Error(`${direction} through the tunnel failed: ${err.message}${await whereBytesStopped(s)}`)
  }
}

/** Says where a failed transfer's bytes stopped: at the consumer's ingress or at the exit. */
async function whereBytesStopped (s: Scenario): Promise<string> {
  try {
    const exit = (await s.exit.call('status')).exit
    const proxy: any = s.consumer.status().proxy
    return ` [consumer ingress: ${proxy.bytesOut as number} B to exits, ${proxy.bytesIn as number} B back, ${proxy.tunnelsOpen as number} open; exit: ${exit.bytesIn as number} B to targets, ${exit.bytesOut as number} B back, ${exit.tunnelsOpen as number} open]`
  } catch {
    return ''
  }
}

/**
 * Where the client and the data target of the throughput figures run
 * (SPAREBAND_BENCH_LOAD_PLACEMENT):
 * - `split` (default): the client in the bench's process beside the
 *   consumer, the target in the exit's process, as in the field: the member's
 *   browser on its machine, the web server near the exit. Each process then
 *   does one end's work, as the bare stream's two nodes do;
 * - `in-process`: client and target both beside the consumer, which leaves
 *   the bench's process with three parties' work and the exit's with one;
 * - `child`: client and target in a process of their own, which also shows
 *   their share of the CPU (three busy processes on two cores).
 */
type LoadPlacement = 'split' | 'in-process' | 'child'
const LOAD_PLACEMENT: LoadPlacement = (['in-process', 'child'] as const).find(p => p === process.env.SPAREBAND_BENCH_LOAD_PLACEMENT) ?? 'split'

interface Load {
  where: string
  /** Processes besides the consumer's and the exit's that a transfer runs through. */
  procs: CpuSource[]
  /** A data port of its own that exits must allow (the load child's). */
  dataPort?: number
  transfer: (s: Scenario, direction: 'download' | 'upload', total: number) => Promise<TransferResult>
}

async function startLoad (data: DataTarget): Promise<Load> {
  if (LOAD_PLACEMENT === 'split') {
    return {
      where: 'client beside the consumer, data target in the exit\'s process',
      procs: [],
      transfer: async (s, dir, total) => tunnelTransfer(s, s.dataPortBesideExit!, dir, total)
    }
  }
  if (LOAD_PLACEMENT === 'in-process') {
    return { where: 'client and data target beside the consumer', procs: [], transfer: async (s, dir, total) => tunnelTransfer(s, data.port, dir, total) }
  }
  const child = await ChildNode.spawn()
  cleanups.push(async () => child.close())
  const { port } = await child.call<{ port: number }>('data-server')
  return {
    dataPort: port,
    where: `client and data target in a process of their own (pid ${child.pid})`,
    procs: [child],
    transfer: async (s, direction, total) => {
      try {
        return await child.call<TransferResult>('tunnel-transfer', { socksPort: s.socksPort, port, direction, total })
      } catch (err: any) {
        throw new Error(`${direction} through the tunnel failed: ${String(err.message).split('\n')[0]}${await whereBytesStopped(s)}`)
      }
    }
  }
}

/** What each process's CPU figure covers, in the order of measured(): consumer, exit, then the load's own. */
function cpuRoles (parts: (i: number) => string): string {
  const consumer = LOAD_PLACEMENT === 'child' ? 'consumer' : LOAD_PLACEMENT === 'split' ? 'consumer (with client)' : 'consumer (with client and target)'
  const exit = LOAD_PLACEMENT === 'split' ? 'exit (with target)' : 'exit'
  return `${consumer} ${parts(0)}, ${exit} ${parts(1)}${LOAD_PLACEMENT === 'child' ? `, client and target ${parts(2)}` : ''}`
}

const self = thisProcess

// ---------------------------------------------------------------- 1. bare stream

interface Bare { pull: (total: number) => Promise<TransferResult>, where: string, procs: CpuSource[], close: () => Promise<void> }

/** A bare node in the bench pulling from a bare node in a child (or in the bench too). */
async function bareStream (placement: Placement, muxer: Muxer = 'node'): Promise<Bare> {
  const local = await createBareNode(muxer)
  await local.start()
  cleanups.push(async () => local.stop())
  let remoteAddr: string
  let closeRemote: () => Promise<void>
  const procs: CpuSource[] = [self]
  if (placement === 'child process') {
    const remote = await ChildNode.spawn()
    procs.push(remote)
    cleanups.push(async () => remote.close())
    const b = await remote.call('bare', { muxer })
    remoteAddr = `${b.addresses[0] as string}`
    closeRemote = async () => remote.close()
  } else {
    const other = await createBareNode(muxer)
    await other.start()
    cleanups.push(async () => other.stop())
    remoteAddr = `${other.getMultiaddrs()[0].toString()}`
    closeRemote = async () => other.stop()
  }
  const addr = multiaddr(remoteAddr)
  return {
    where: placement === 'child process' ? 'source node in a child process' : 'both nodes in one process',
    pull: async total => pullFromSource(local, addr, total),
    procs,
    close: async () => { await closeRemote(); await local.stop() }
  }
}

/** Median of one process's share over the rounds. */
function parts (rounds: number[][], i: number): string {
  return rounds.length === 0 || rounds[0][i] == null ? 'n/a' : median(rounds.map(r => r[i])).toFixed(1)
}

function spread (xs: number[]): string {
  return xs.length > 1 ? `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)} over ${xs.length} rounds` : '1 round'
}

// ---------------------------------------------------------------- 4. TTFB

async function timeToFirstByte (connectFn: (timings: Socks5Timings) => Promise<Socket>, phases?: number[][]): Promise<number> {
  const timings: Socks5Timings = {}
  const started = performance.now()
  const socket = await connectFn(timings)
  const sent = performance.now()
  return new Promise<number>((resolve, reject) => {
    socket.once('data', () => {
      const now = performance.now()
      socket.destroy()
      if (phases != null && timings.reply != null) {
        // TCP connect to the proxy + greeting, CONNECT -> reply (tunnel setup), GET -> first byte
        phases[0].push(timings.method! - started)
        phases[1].push(timings.reply - timings.method!)
        phases[2].push(now - sent)
      }
      resolve(now - started)
    })
    socket.once('error', reject)
    socket.once('end', () => reject(new Error('connection ended before a response')))
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    socket.resume()
  })
}

async function ttfb (s: Scenario, http: Target, label = '', requests = TTFB_REQUESTS): Promise<{ directP50: number, tunnelP50: number }> {
  const direct = async (): Promise<Socket> => connectDirect(http.port)
  const tunnelled = async (timings: Socks5Timings): Promise<Socket> => socks5Connect(s.socksPort, '127.0.0.1', http.port, { timings })
  for (let i = 0; i < TTFB_WARMUP; i++) { await timeToFirstByte(direct); await timeToFirstByte(tunnelled) }
  const d: number[] = []
  const t: number[] = []
  const phases: number[][] = [[], [], []]
  // interleaved, so drift in the machine's load affects both alike
  for (let i = 0; i < requests; i++) {
    d.push(await timeToFirstByte(direct))
    t.push(await timeToFirstByte(tunnelled, phases))
  }
  const sort = (a: number[]): number[] => a.sort((x, y) => x - y)
  sort(d)
  sort(t)
  const [d50, d99, t50, t99] = [percentile(d, 50), percentile(d, 99), percentile(t, 50), percentile(t, 99)]
  if (label !== '') {
    r.line(`TTFB via SOCKS5 tunnel p50${label}`, t50, 'ms', `direct ${d50.toFixed(2)} ms, overhead ${(t50 - d50).toFixed(2)} ms; ${requests} GETs`)
    return { directP50: d50, tunnelP50: t50 }
  }
  r.line('TTFB direct p50', d50, 'ms', `${requests} GETs, new TCP connection each, interleaved with the tunnelled ones`)
  r.line('TTFB direct p99', d99, 'ms')
  r.line('TTFB via SOCKS5 tunnel p50', t50, 'ms', 'SOCKS5 greeting + CONNECT (new tunnel stream) + GET')
  r.line('TTFB via SOCKS5 tunnel p99', t99, 'ms')
  r.line('TTFB overhead p50', t50 - d50, 'ms')
  r.line('TTFB overhead p99', t99 - d99, 'ms')
  const [greet, setup, get] = phases.map(p => percentile(sort(p), 50))
  r.info(`tunnelled TTFB by phase, p50: proxy connect + greeting ${greet.toFixed(2)} ms, CONNECT -> reply (tunnel setup) ${setup.toFixed(2)} ms, GET -> first byte ${get.toFixed(2)} ms`)
  // the floor for tunnel setup: a libp2p ping is a new stream (multistream-select round trip) plus one echo round trip,
  // as a tunnel is a new stream plus the request/response round trip
  const ping = (s.consumer.libp2p.services as any).ping
  if (ping?.ping != null) {
    const exitPeer = s.consumer.libp2p.getConnections().find(c => c.remotePeer.toString() === s.exitId)?.remotePeer
    const pings: number[] = []
    for (let i = 0; i < 100 && exitPeer != null; i++) {
      const started = performance.now()
      await ping.ping(exitPeer)
      pings.push(performance.now() - started)
    }
    if (pings.length > 0) r.line('libp2p ping consumer -> exit p50', percentile(sort(pings), 50), 'ms', 'new stream + 32-byte echo: the same two round trips as a tunnel setup')
  }
  return { directP50: d50, tunnelP50: t50 }
}

// ---------------------------------------------------------------- slow readers

/**
 * Backpressure through the tunnel: a target (upload) or a client (download)
 * that reads 4 MiB, then stalls for 300 ms (about 13 MB/s). The tunnel must complete, and
 * the bytes in flight (taken from the sender but not yet read) must stay
 * bounded by the yamux window (16 MiB) plus socket buffers (a few MiB per
 * socket on loopback); without working backpressure they grow with the
 * transfer, or the stream is reset when its 32 MiB read buffer overflows.
 */
const SLOW: SlowReader = { burstBytes: 4 * MiB, stallMs: 300 }
const SLOW_TOTAL = Math.min(96 * MiB, TOTAL)
const SLOW_MAX_IN_FLIGHT = 64 * MiB

async function slowReaders (s: Scenario, data: DataTarget): Promise<boolean> {
  const proxy = (): any => s.consumer.status().proxy
  let allOk = true
  for (const dir of ['upload', 'download'] as const) {
    // upload: consumer took from its client - target received; download: target wrote - client received
    const base = { pushed: proxy().bytesOut as number, received: data.counters.received, sent: data.counters.sent }
    let clientReceived = 0
    const inFlight = (): number => dir === 'upload'
      ? (proxy().bytesOut - base.pushed) - (data.counters.received - base.received)
      : (data.counters.sent - base.sent) - clientReceived
    let max = 0
    const sampler = setInterval(() => { max = Math.max(max, inFlight()) }, 20)
    let outcome: string
    let ok = false
    try {
      const res = await tunnelTransfer(s, data.port, dir, SLOW_TOTAL, { slow: SLOW, onBytes: n => { clientReceived += n } })
      check(`slow ${dir}`, res, SLOW_TOTAL)
      ok = max <= SLOW_MAX_IN_FLIGHT
      outcome = `${mbps(res.bytes, res.ms).toFixed(1)} MB/s, complete, SHA-256 ok`
    } catch (err: any) {
      outcome = `FAILED: ${String(err.message).slice(0, 300)}`
    } finally {
      clearInterval(sampler)
    }
    max = Math.max(max, inFlight())
    allOk &&= ok
    r.line(`slow ${dir === 'upload' ? 'target' : 'client'}, max bytes in flight`, max / MiB, 'MiB', outcome)
  }
  return allOk
}

// ---------------------------------------------------------------- 5. exit memory

async function exitMemory (ports: Ports, hold: HoldTarget): Promise<{ opened: number, failed: number, kibPerTunnel: number }> {
  const s = await directScenario(ports, 'child process')
  const exitStatus = async (): Promise<any> => (await s.exit.call('status')).exit
  const sockets: Socket[] = []
  cleanups.push(async () => { for (const x of sockets) x.destroy() })

  const openTunnels = async (n: number): Promise<{ ok: number, errors: Map<string, number>, ms: number }> => {
    const errors = new Map<string, number>()
    let ok = 0
    let next = 0
    const started = performance.now()
    const worker = async (): Promise<void> => {
      while (next < n) {
        next++
        try {
          const socket = await socks5Connect(s.socksPort, '127.0.0.1', hold.port)
          socket.on('error', () => {})
          sockets.push(socket)
          ok++
        } catch (err: any) {
          errors.set(err.message, (errors.get(err.message) ?? 0) + 1)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, n) }, worker))
    return { ok, errors, ms: performance.now() - started }
  }
  const closeTunnels = async (): Promise<void> => {
    for (const x of sockets.splice(0)) x.destroy()
    let last = ''
    await waitFor('the exit to close every tunnel', async () => {
      const st = await exitStatus()
      last = `exit tunnelsOpen ${st.tunnelsOpen as number}, target holds ${hold.open}, consumer ingress ${JSON.stringify(s.consumer.status().proxy)}`
      return st.tunnelsOpen === 0 && hold.open === 0
    }, 20_000).catch(err => { throw new Error(`${err.message} (${last})`) })
  }

  // warm-up: code paths loaded and optimised before the baseline
  const warm = await openTunnels(20)
  if (warm.ok !== 20) throw new Error(`warm-up tunnels failed: ${[...warm.errors.keys()].join('; ')}`)
  await closeTunnels()
  await sleep(500)
  const before = await s.exit.mem(true)

  const res = await openTunnels(TUNNELS)
  // every tunnel that the client saw open is open at the exit and at the target
  await waitFor('every open tunnel to reach the target', async () => (await exitStatus()).tunnelsOpen === res.ok && hold.open === res.ok, 20_000).catch(() => {})
  await sleep(500)
  const during = await s.exit.mem(true)
  const st = await exitStatus()
  const perTunnel = res.ok > 0 ? (during.rss - before.rss) / res.ok / KiB : NaN
  const perTunnelOf = (field: 'heapUsed' | 'heapTotal' | 'external'): string => res.ok > 0 ? ((during[field] - before[field]) / res.ok / KiB).toFixed(1) : 'n/a'

  r.line(`exit tunnels opened (of ${TUNNELS})`, res.ok, '', `${res.errors.size === 0 ? 'no errors' : `${TUNNELS - res.ok} failed`}; ${(res.ms / 1000).toFixed(1)} s with ${OPEN_CONCURRENCY} at a time; exit reports ${st.tunnelsOpen as number} open, target holds ${hold.open}`)
  for (const [msg, n] of res.errors) r.info(`  ${n} x ${msg}`)
  r.line('exit RSS before (idle, after GC)', before.rss / MiB, 'MiB', `heap ${(before.heapUsed / MiB).toFixed(1)} MiB`)
  r.line(`exit RSS with ${res.ok} tunnels open`, during.rss / MiB, 'MiB', `heap ${(during.heapUsed / MiB).toFixed(1)} MiB, external ${(during.external / MiB).toFixed(1)} MiB`)
  r.line('exit RSS per open tunnel', perTunnel, 'KiB', `of which V8 heap used ${perTunnelOf('heapUsed')} KiB (heap reserved ${perTunnelOf('heapTotal')} KiB), buffers outside the heap ${perTunnelOf('external')} KiB`)

  await closeTunnels()
  await sleep(500)
  const after = await s.exit.mem(true)
  r.line('exit RSS after all closed', after.rss / MiB, 'MiB', `heap ${(after.heapUsed / MiB).toFixed(1)} MiB (${((after.heapUsed - before.heapUsed) / KiB).toFixed(0)} KiB above before; RSS is rarely given back)`)
  await s.close()
  return { opened: res.ok, failed: TUNNELS - res.ok, kibPerTunnel: perTunnel }
}

// ---------------------------------------------------------------- accounting on

/** The direct tunnel with the node's default accounting (receipts every 1 MiB / 5 s): not a target, a figure. */
async function withAccounting (ports: Ports, load: Load, http: Target): Promise<void> {
  let s: Scenario | undefined
  try {
    s = await directScenario(ports, 'child process', true)
    // a new identity gets its starting allowance once its proof of work is solved (in the background)
    const started = performance.now()
    const solved = (): boolean => (s!.consumer.status() as any).accounting?.proofOfWork?.solved === true
    await waitFor('the consumer\'s proof of work', () => solved(), 120_000)
    // the exit solves its own in the background too: measuring while it burns a CPU would be unfair
    const exitSolved = async (): Promise<boolean> => (await s!.exit.call<any>('status'))?.accounting?.proofOfWork?.solved === true
    const deadline = performance.now() + 120_000
    while (!(await exitSolved()) && performance.now() < deadline) await sleep(100)
    r.info(`accounting on (node defaults) for consumer and exit; fresh identities, the consumer's proof of work took ${((performance.now() - started) / 1000).toFixed(1)} s more after start; it then spends its starting allowance`)
    r.info('single runs in a fresh scenario, not comparable with the medians above (the same section with SPAREBAND_ACCOUNTING=false measures about alike): the cost of accounting is the accounting-tunnel bench\'s, which alternates on and off')
    // the same warm-up as the accounting-off figures get, so JIT and windows compare fairly
    check('accounting-on warm-up', await load.transfer(s, 'download', WARMUP), WARMUP)
    for (const dir of ['download', 'upload'] as const) {
      try {
        const res = await measured([self, s.exit, ...load.procs], async () => load.transfer(s!, dir, TOTAL))
        check(`accounting-on ${dir}`, res, TOTAL)
        const holds = (await s.exit.call<any>('status'))?.accounting?.pending?.holds
        r.line(`SOCKS5 tunnel, direct, ${dir}, accounting on`, mbps(res.bytes, res.ms), 'MB/s', `SHA-256 ok; exit held the tunnel for unsigned bytes ${holds as number} times so far`)
        r.line(`SOCKS5 tunnel, direct, ${dir}, accounting on, CPU per MiB`, res.cpuMsPerMiB, 'ms', cpuRoles(i => res.cpuByProcess[i].toFixed(1)))
      } catch (err: any) {
        r.line(`SOCKS5 tunnel, direct, ${dir}, accounting on`, 'FAILED', '', String(err.message).slice(0, 400))
      }
    }
    try {
      await ttfb(s, http, ', accounting on', ACCOUNTING_TTFB_REQUESTS)
    } catch (err: any) {
      r.line('TTFB via SOCKS5 tunnel p50, accounting on', 'FAILED', '', String(err.message).slice(0, 300))
    }
  } catch (err: any) {
    r.line('accounting-on scenario', 'FAILED', '', String(err.message).slice(0, 400))
  } finally {
    await s?.close()
  }
}

// ---------------------------------------------------------------- main

function machineLoad (): string {
  return `load average ${loadavg().map(l => l.toFixed(2)).join(' ')} on ${availableParallelism()} CPUs`
}

export async function main (): Promise<void> {
  const t0 = performance.now()
  const placement: Placement = process.env.SPAREBAND_BENCH_EXIT_PLACEMENT === 'in-process' ? 'in-process' : 'child process'
  r.info(`payload ${TOTAL / MiB} MiB per transfer over 127.0.0.1, node ${process.version}; MB/s = 10^6 bytes/s; ${machineLoad()}`)
  if (loadavg()[0] > availableParallelism()) r.info('the machine is busy: throughput and latency figures will be low and noisy')
  expectedSha256(TOTAL)
  expectedSha256(WARMUP)

  try {
    const rates: Record<string, number> = {}
    let tt: { directP50: number, tunnelP50: number } | undefined
    let slowOk: boolean | undefined

    const data = await startDataServer()
    const http = await startHttpServer()
    const hold = await startHoldServer()
    cleanups.push(async () => data.close(), async () => http.close(), async () => hold.close())
    const load = await startLoad(data)
    const ports = { data: data.port, http: http.port, hold: hold.port, loadData: load.dataPort ?? 0 }

    // 1., 2., 4. and the slow readers on one direct consumer -> exit connection
    if (runs('bare') || runs('direct') || runs('ttfb') || runs('slow')) {
      const bare = runs('bare') ? await bareStream(placement) : undefined
      // stock js-libp2p (a yamux window update per frame): what the node's transport gains, for context
      const stock = runs('bare') ? await bareStream(placement, 'stock') : undefined
      // plain TCP, measured in a process of its own: the bench's process carries the consumer's heap
      const hopper = runs('bare') ? await ChildNode.spawn() : undefined
      if (hopper != null) cleanups.push(async () => hopper.close())
      const direct = runs('direct') || runs('ttfb') || runs('slow') ? await directScenario(ports, placement) : undefined
      if (direct != null) r.info(`exit in a ${placement} (pid ${direct.exit.pid}), consumer in the bench process (pid ${process.pid}); throughput: SOCKS5 client and data target ${load.where}; TTFB and slow readers: client and targets in the bench process`)
      if (bare != null) check('bare stream warm-up', await bare.pull(WARMUP), WARMUP)
      if (stock != null) check('stock stream warm-up', await stock.pull(WARMUP), WARMUP)
      if (direct != null && runs('direct')) check('tunnel warm-up', await load.transfer(direct, 'download', WARMUP), WARMUP)
      const samples: Record<string, number[]> = { bare: [], stock: [], download: [], upload: [] }
      const cpu: Record<string, number[]> = { bare: [], stock: [], download: [], upload: [], hop: [] }
      const cpuParts: Record<string, number[][]> = { bare: [], stock: [], download: [], upload: [] }
      if (bare != null || runs('direct')) {
        for (let round = 0; round < ROUNDS; round++) {
          for (const [name, b] of [['bare', bare], ['stock', stock]] as const) {
            if (b == null) continue
            const res = await measured(b.procs, async () => b.pull(TOTAL))
            check(`${name} stream`, res, TOTAL)
            samples[name].push(mbps(res.bytes, res.ms))
            cpu[name].push(res.cpuMsPerMiB)
            cpuParts[name].push(res.cpuByProcess)
          }
          if (hopper != null) cpu.hop.push(await hopper.call<number>('tcp-hop', { total: TOTAL }))
          if (direct != null && runs('direct')) {
            for (const dir of ['download', 'upload'] as const) {
              const res = await measured([self, direct.exit, ...load.procs], async () => load.transfer(direct, dir, TOTAL))
              check(`direct tunnel ${dir}`, res, TOTAL)
              samples[dir].push(mbps(res.bytes, res.ms))
              cpu[dir].push(res.cpuMsPerMiB)
              cpuParts[dir].push(res.cpuByProcess)
            }
          }
        }
      }
      await bare?.close()
      await stock?.close()
      await hopper?.close()
      if (samples.bare.length > 0) {
        rates.bare = median(samples.bare)
        rates.stock = median(samples.stock)
        r.line('bare libp2p stream', rates.bare, 'MB/s', `median, ${spread(samples.bare)}; ${bare!.where}; the node's transport (yamux window updates at half the window); SHA-256 ok`)
        r.line('bare libp2p stream, CPU per MiB', median(cpu.bare), 'ms', `median; sink ${parts(cpuParts.bare, 0)}, source ${parts(cpuParts.bare, 1)}`)
        r.line('stock js-libp2p stream', rates.stock, 'MB/s', `median, ${spread(samples.stock)}; @libp2p/yamux as shipped (a window update per frame), not a target; SHA-256 ok`)
        r.line('stock js-libp2p stream, CPU per MiB', median(cpu.stock), 'ms', `median; sink ${parts(cpuParts.stock, 0)}, source ${parts(cpuParts.stock, 1)}`)
        r.line('plain loopback TCP hop, CPU per MiB', median(cpu.hop), 'ms', `median, ${Math.min(...cpu.hop).toFixed(1)}-${Math.max(...cpu.hop).toFixed(1)}; both ends in one process of their own, nothing else done: a tunnel adds two of these to the stream`)
      }
      for (const dir of ['download', 'upload'] as const) {
        if (samples[dir].length === 0) continue
        rates[`direct ${dir}`] = median(samples[dir])
        const ratio = rates.bare != null ? `${(100 * rates[`direct ${dir}`] / rates.bare).toFixed(0)}% of bare (${(100 * rates[`direct ${dir}`] / rates.stock).toFixed(0)}% of stock), ` : ''
        r.line(`SOCKS5 tunnel, direct, ${dir}`, rates[`direct ${dir}`], 'MB/s', `${ratio}median, ${spread(samples[dir])}; SHA-256 ok`)
        const cpuRatio = cpu.bare.length > 0 ? `${(median(cpu[dir]) / median(cpu.bare)).toFixed(2)} x bare, ${(median(cpu[dir]) - median(cpu.bare)).toFixed(1)} ms more (two TCP hops: ${(2 * median(cpu.hop)).toFixed(1)}); ` : ''
        r.line(`SOCKS5 tunnel, direct, ${dir}, CPU per MiB`, median(cpu[dir]), 'ms', `${cpuRatio}median; ${cpuRoles(i => parts(cpuParts[dir], i))}`)
      }
      if (direct != null && runs('ttfb')) tt = await ttfb(direct, http)
      if (direct != null && runs('slow')) slowOk = await slowReaders(direct, data)
      await direct?.close()
    }

    // 3. relay
    if (runs('relay')) {
      const relayed = await relayScenario(ports)
      r.info(`relay and exit each in a child process (pids ${relayed.relay!.pid}, ${relayed.exit.pid}); the consumer reaches the exit only via <relay>/p2p-circuit; 1 round (the relay's 1024 MiB limit per relayed connection)`)
      check('relayed warm-up', await load.transfer(relayed, 'download', WARMUP), WARMUP)
      for (const dir of ['download', 'upload'] as const) {
        const res = await load.transfer(relayed, dir, TOTAL)
        check(`relayed tunnel ${dir}`, res, TOTAL)
        // still relayed: no hole punch took the tunnel direct
        assertOnlyRelayed(relayed.consumer, relayed.exitId)
        rates[`relayed ${dir}`] = mbps(res.bytes, res.ms)
        const ratio = rates.bare != null ? `${(100 * rates[`relayed ${dir}`] / rates.bare).toFixed(0)}% of bare; ` : ''
        r.line(`SOCKS5 tunnel, via relay, ${dir}`, rates[`relayed ${dir}`], 'MB/s', `${ratio}SHA-256 ok`)
      }
      const relayMem = await relayed.relay!.mem(false)
      r.line('relay peak RSS', relayMem.maxRss / MiB, 'MiB')
      await relayed.close()
    }

    if (runs('accounting')) await withAccounting(ports, load, http)

    // 5. memory
    const mem = runs('memory') ? await exitMemory(ports, hold) : undefined

    r.line('total bench time', (performance.now() - t0) / 1000, 's', machineLoad())

    if (rates.bare != null) {
      for (const dir of ['download', 'upload']) {
        const rate = rates[`direct ${dir}`]
        if (rate == null) continue
        const relayed = rates[`relayed ${dir}`]
        r.target(`tunnel ${dir} >= 80% of bare stream`, rate >= TARGET_THROUGHPUT_RATIO * rates.bare,
          `${rate.toFixed(0)} vs ${rates.bare.toFixed(0)} MB/s = ${(100 * rate / rates.bare).toFixed(0)}%${relayed != null ? ` (via relay: ${(100 * relayed / rates.bare).toFixed(0)}%, not a target)` : ''}`)
      }
    }
    if (tt != null) {
      const overhead = tt.tunnelP50 - tt.directP50
      r.target('TTFB overhead <= 2 ms at p50', overhead <= TARGET_TTFB_OVERHEAD_MS, `${overhead.toFixed(2)} ms (${tt.tunnelP50.toFixed(2)} vs ${tt.directP50.toFixed(2)} ms)`)
    }
    if (mem != null) {
      r.target(`${TUNNELS} tunnels without error`, mem.failed === 0, `${mem.opened} opened, ${mem.failed} failed`)
      r.target('<= 64 KiB exit memory per open tunnel', mem.kibPerTunnel <= TARGET_KIB_PER_TUNNEL, `${mem.kibPerTunnel.toFixed(1)} KiB RSS per tunnel`)
    }
    if (slowOk != null) r.target('(check) backpressure holds for slow readers', slowOk, `tunnels complete, <= ${SLOW_MAX_IN_FLIGHT / MiB} MiB in flight`)
    r.summary()
    if (process.env.SPAREBAND_BENCH_STRICT === '1' && r.targets.some(t => !t.ok)) process.exitCode = 1
  } finally {
    await cleanupAll()
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    await main()
  } catch (err: any) {
    console.error('tunnel bench failed:', err?.stack ?? err)
    await cleanupAll()
    process.exitCode = 1
  }
}
