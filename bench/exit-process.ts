/**
 * A spareband node in a process of its own, driven by the bench over IPC:
 * the exit (and the relay, and a bare libp2p node for the baseline) run here
 * so that throughput is not shared with the bench's event loop and memory is
 * measured for the node alone.
 *
 * Parent -> child: `{ id, cmd, ...args }`; child -> parent: `{ id, ok, value }`
 * or `{ id, ok: false, error }`. Commands: `start { config }` (a
 * SparebandNode, answers peer id, addresses and proxy ports), `bare` (a bare
 * libp2p node serving the byte source), `dial { addr }`, `connections`,
 * `status`, `peers`, `mem { gc }` (RSS, heap, peak RSS; after GC when asked), `cpu`
 * (CPU ms used so far), `gc` (full garbage collections so far), `stop`;
 * and, for a load generator with no node, `data-server` (starts the bench's
 * data target here, answers its port) and `tunnel-transfer { socksPort, port,
 * direction, total }` (a SOCKS5 client here moves `total` bytes to or from it).
 * The child stops its node and exits when the parent goes away.
 *
 * Run with `--expose-gc` so `mem { gc: true }` measures live memory.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { createSparebandNode } from '../src/index.ts'
import { createBareNode } from './lib/bare.ts'
import type { Muxer } from './lib/bare.ts'
import { socks5Connect } from './lib/socks5-client.ts'
import { cpuMs } from './lib/cpu.ts'
import { countFullCollections, fullCollections } from './lib/gc-counter.ts'
import { tcpHopCpuMsPerMiB } from './lib/tcp-hop.ts'
import { download, startDataServer, upload } from './lib/targets.ts'
import type { DataTarget, TransferResult } from './lib/targets.ts'
import type { SparebandConfigInput, SparebandNode } from '../src/index.ts'
import type { Libp2p } from '@libp2p/interface'

export interface MemoryFigures {
  rss: number
  heapUsed: number
  heapTotal: number
  external: number
  arrayBuffers: number
  /** Peak RSS of the process so far, bytes. */
  maxRss: number
}

export interface StartedNode {
  peerId: string
  addresses: string[]
  socksPort?: number
  httpPort?: number
  pid: number
}

/** Runs one node and answers the bench's commands; used in a child process or in the bench's own. */
export class NodeHost {
  node?: SparebandNode
  /** Bare nodes (the stream baselines): the node's transport, and stock js-libp2p's. */
  bares: Libp2p[] = []
  /** The load generator's target: a process of its own plays the web server and the client, as a server and curl would. */
  data?: DataTarget
  private dataDir?: string

  get libp2p (): Libp2p {
    const l = this.node?.libp2p ?? this.bares[0]
    if (l == null) throw new Error('no node started')
    return l
  }

  async start (config: SparebandConfigInput): Promise<StartedNode> {
    this.dataDir = await mkdtemp(join(tmpdir(), 'sb-bench-'))
    this.node = await createSparebandNode({ dataDir: this.dataDir, config })
    await this.node.start()
    const status: any = this.node.status()
    return { peerId: status.peerId, addresses: status.addresses, socksPort: status.proxy?.socksPort, httpPort: status.proxy?.httpPort, pid: process.pid }
  }

  async startBare (muxer: Muxer = 'node'): Promise<StartedNode> {
    const bare = await createBareNode(muxer)
    await bare.start()
    this.bares.push(bare)
    return { peerId: bare.peerId.toString(), addresses: bare.getMultiaddrs().map(String), pid: process.pid }
  }

  async command (msg: any): Promise<unknown> {
    switch (msg.cmd) {
      case 'start': return this.start(msg.config)
      case 'bare': return this.startBare(msg.muxer)
      case 'dial': {
        const conn = await this.libp2p.dial(multiaddr(msg.addr))
        return { remoteAddr: conn.remoteAddr.toString(), limited: conn.limits != null }
      }
      case 'connections': return this.libp2p.getConnections().map(c => ({ peer: c.remotePeer.toString(), remoteAddr: c.remoteAddr.toString(), limited: c.limits != null, streams: c.streams.length }))
      case 'status': return this.node?.status()
      case 'peers': return this.node?.peers()
      case 'mem': return memory(msg.gc === true)
      case 'cpu': return cpuMs()
      case 'gc': return fullCollections()
      case 'data-server': {
        this.data ??= await startDataServer()
        return { port: this.data.port }
      }
      case 'tunnel-transfer': return this.tunnelTransfer(msg)
      case 'tcp-hop': return tcpHopCpuMsPerMiB(msg.total)
      case 'stop': await this.stop(); return {}
      default: throw new Error(`unknown command ${String(msg.cmd)}`)
    }
  }

  /** A client here downloads from or uploads to the data server through a SOCKS5 proxy. */
  private async tunnelTransfer (msg: { socksPort: number, port: number, direction: 'download' | 'upload', total: number }): Promise<TransferResult> {
    const socket = await socks5Connect(msg.socksPort, '127.0.0.1', msg.port)
    return msg.direction === 'download' ? download(socket, msg.total) : upload(socket, msg.total)
  }

  async stop (): Promise<void> {
    await this.data?.close()
    this.data = undefined
    const node = this.node
    const bares = this.bares.splice(0)
    this.node = undefined
    await node?.stop()
    await Promise.all(bares.map(async b => b.stop()))
    if (this.dataDir != null) await rm(this.dataDir, { recursive: true, force: true })
    this.dataDir = undefined
  }
}

export async function memory (collect: boolean): Promise<MemoryFigures> {
  const gc = (globalThis as any).gc as (() => void) | undefined
  if (collect && gc != null) {
    // twice, with a pause for finalizers and weak callbacks in between
    gc()
    await sleep(50)
    gc()
  }
  const m = process.memoryUsage()
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, maxRss: process.resourceUsage().maxRSS * 1024 }
}

export async function main (): Promise<void> {
  if (process.send == null) throw new Error('exit-process.js is driven over IPC: spawn it with an ipc channel')
  countFullCollections()
  const host = new NodeHost()
  let stopping = false
  const shutdown = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    const timer = setTimeout(() => process.exit(1), 5000)
    timer.unref()
    await host.stop().catch(() => {})
    process.exit(0)
  }
  process.on('disconnect', () => { void shutdown() })
  process.on('SIGTERM', () => { void shutdown() })
  process.on('message', (msg: any) => {
    host.command(msg).then(
      value => {
        process.send?.({ id: msg.id, ok: true, value })
        if (msg.cmd === 'stop') process.disconnect()
      },
      (err: any) => process.send?.({ id: msg.id, ok: false, error: String(err?.stack ?? err) })
    )
  })
  process.send({ id: 0, ok: true, value: 'ready' })
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main()
