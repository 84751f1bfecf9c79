/**
 * Routing bench: in a network of 30 nodes on this machine (24 exits in six
 * regions, 6 consumers that know only node 0), the time from a consumer's
 * first request for a region to the first byte back through an exit: DHT
 * discovery, ad verification, selection, dial, tunnel setup and the origin's
 * answer. Then the same for a second request, with warm caches.
 *
 *   npm run build && node dist/bench/routing.bench.js
 */

import { connect, createServer } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createSparebandNode } from '../src/index.ts'
import { Report, percentile } from './lib/report.ts'
import type { SparebandNode } from '../src/index.ts'
import type { AddressInfo } from 'node:net'

const REGIONS = ['de', 'us', 'jp', 'fr', 'gb', 'br']
const EXITS_PER_REGION = 4
const CONSUMERS = 6

/** One plain HTTP GET through the consumer's HTTP proxy; resolves with ms to the first response byte. */
async function firstByteMs (proxyPort: number, targetPort: number, region: string): Promise<number> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: proxyPort })
    const auth = Buffer.from(`region-${region}:`).toString('base64')
    socket.setTimeout(30_000, () => socket.destroy(new Error('timed out')))
    socket.once('connect', () => socket.write(`GET http://127.0.0.1:${targetPort}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`))
    socket.once('data', d => {
      const ms = performance.now() - started
      socket.destroy()
      if (!d.toString().startsWith('HTTP/1.1 200')) reject(new Error(`region ${region}: ${d.toString().split('\r\n')[0]}`))
      else resolve(ms)
    })
    socket.once('error', reject)
  })
}

export async function main (): Promise<void> {
  const report = new Report('routing')
  const origin = createServer(s => { s.on('error', () => {}); s.once('data', () => s.end('HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n')) })
  await new Promise<void>(resolve => origin.listen(0, '127.0.0.1', resolve))
  const targetPort = (origin.address() as AddressInfo).port
  const dirs: string[] = []
  const nodes: SparebandNode[] = []
  const make = async (config: Record<string, any>): Promise<SparebandNode> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sb-bench-routing-'))
    dirs.push(dataDir)
    const node = await createSparebandNode({
      dataDir,
      controlApi: false,
      config: {
        listen: ['/ip4/127.0.0.1/tcp/0'],
        proxy: { socks_port: 0, http_port: 0 },
        accounting: { pow_difficulty: 8 },
        ...config,
        network: { local_testnet: true, ...config.network }
      }
    })
    await node.start()
    nodes.push(node)
    return node
  }
  try {
    const t0 = performance.now()
    const first = await make({ region: REGIONS[0], exit: { allow_private_targets: true, allowed_ports: [targetPort] } })
    const boot = first.status().addresses.slice(0, 1)
    for (let i = 1; i < REGIONS.length * EXITS_PER_REGION; i++) {
      await make({ region: REGIONS[i % REGIONS.length], exit: { allow_private_targets: true, allowed_ports: [targetPort] }, network: { bootstrap: boot } })
    }
    const consumers: SparebandNode[] = []
    for (let i = 0; i < CONSUMERS; i++) consumers.push(await make({ exit: { enabled: false }, network: { bootstrap: boot } }))
    report.line('nodes started', nodes.length, 'nodes', `${Math.round(performance.now() - t0)} ms`)
    // let every exit publish its ad and region keys
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline && !nodes.filter(n => n.config.exit.enabled).every(n => (n.status() as any).routing.advertising.published === true)) {
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    report.line('network settled', Math.round(performance.now() - t0), 'ms')

    const firstSamples: number[] = []
    const warmSamples: number[] = []
    for (const c of consumers) {
      const port = (c.status() as any).proxy.httpPort
      for (const region of [...REGIONS].sort(() => Math.random() - 0.5)) {
        firstSamples.push(await firstByteMs(port, targetPort, region))
        warmSamples.push(await firstByteMs(port, targetPort, region))
      }
    }
    firstSamples.sort((a, b) => a - b)
    warmSamples.sort((a, b) => a - b)
    report.line('first request for a region, TTFB p50', percentile(firstSamples, 50), 'ms', `${firstSamples.length} samples, 30 nodes`)
    report.line('first request for a region, TTFB p99', percentile(firstSamples, 99), 'ms')
    report.line('next request, TTFB p50', percentile(warmSamples, 50), 'ms')
    report.line('next request, TTFB p99', percentile(warmSamples, 99), 'ms')
  } finally {
    await Promise.allSettled(nodes.map(async n => n.stop()))
    origin.close()
    await Promise.allSettled(dirs.map(async d => rm(d, { recursive: true, force: true })))
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
  process.exit(0)
}
