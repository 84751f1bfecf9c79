import { describe, it, expect } from 'vitest'
import { connect, createServer } from 'node:net'
import { readdirSync, readlinkSync } from 'node:fs'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandConfigInput, SparebandNode } from '../../src/index.ts'
import type { AddressInfo } from 'node:net'

/** An embedding app's view of start() and stop(): real nodes on loopback, in this process. */

const config = (socksPort = 0): SparebandConfigInput => ({
  listen: ['/ip4/127.0.0.1/tcp/0'],
  api: { port: 0 },
  proxy: { socks_port: socksPort, http_port: 0 },
  network: { local_testnet: true },
  accounting: { pow_difficulty: 8 }
})

const newNode = async (socksPort = 0): Promise<SparebandNode> => createSparebandNode({ dataDir: await tempDir('sb-lifecycle-'), config: config(socksPort) })

/** Whether something accepts TCP connections on 127.0.0.1:port. */
const accepts = async (port: number): Promise<boolean> => new Promise(resolve => {
  const s = connect(port, '127.0.0.1')
  s.once('connect', () => { s.destroy(); resolve(true) })
  s.once('error', () => { resolve(false) })
})

/** The files of `dir` this process holds open. */
const openFilesIn = (dir: string): string[] => readdirSync('/proc/self/fd').flatMap(fd => {
  try {
    const target = readlinkSync(`/proc/self/fd/${fd}`)
    return target.startsWith(dir + '/') ? [target] : []
  } catch {
    return []
  }
})

const counter = (node: SparebandNode): Record<string, number> => {
  const seen: Record<string, number> = { started: 0, stopped: 0 }
  node.addEventListener('node:started', () => { seen.started++ })
  node.addEventListener('node:stopped', () => { seen.stopped++ })
  return seen
}

describe('node lifecycle', () => {
  it('stop() while start() is under way waits for it and stops the node: nothing is left listening', async () => {
    const node = await newNode()
    const seen = counter(node)
    const starting = node.start()
    const stopping = node.stop()
    await Promise.all([starting, stopping])
    expect(node.isRunning).toBe(false)
    expect(node.libp2p.status).toBe('stopped')
    expect(seen).toEqual({ started: 1, stopped: 1 })
    expect(node.libp2p.getMultiaddrs()).toEqual([])
  })

  it('start() twice at once starts the node once; both resolve and the node works', async () => {
    const node = await newNode()
    const seen = counter(node)
    const results = await Promise.allSettled([node.start(), node.start()])
    try {
      expect(results.map(r => r.status)).toEqual(['fulfilled', 'fulfilled'])
      expect(seen.started).toBe(1)
      const status = node.status() as any
      expect(status.accounting.enabled).toBe(true)
      expect(await accepts(status.proxy.socksPort)).toBe(true)
      await waitFor(() => (node.status() as any).accounting.proofOfWork.solved === true, { timeoutMs: 10_000, what: 'the proof of work' })
    } finally {
      await Promise.all([node.stop(), node.stop()])
    }
    expect(seen.stopped).toBe(1)
  })

  it('a start() that failed (a proxy port in use) can be retried once the port is free, with a working ledger and proof of work', async () => {
    const blocker = createServer()
    await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
    const busy = (blocker.address() as AddressInfo).port
    const node = await newNode(busy)
    await expect(node.start()).rejects.toHaveProperty('name', 'AddressInUseError')
    expect(node.isRunning).toBe(false)
    await new Promise<void>(resolve => blocker.close(() => resolve()))
    await node.start()
    try {
      const accounting = (node.status() as any).accounting
      expect(accounting.balance).toBe('0')
      await waitFor(() => (node.status() as any).accounting.proofOfWork.solved === true, { timeoutMs: 10_000, what: 'the proof of work after a retried start' })
      expect((node.status() as any).accounting.allowance).not.toBe('0')
      expect(await accepts(busy)).toBe(true)
    } finally {
      await node.stop()
    }
  })

  it('stop() releases the data directory\'s files, started or not; a stopped node refuses to start again with NodeStoppedError', async () => {
    const never = await newNode()
    expect(openFilesIn(never.dataDir).length).toBeGreaterThan(0)
    await never.stop()
    expect(openFilesIn(never.dataDir)).toEqual([])
    await expect(never.start()).rejects.toHaveProperty('name', 'NodeStoppedError')

    const node = await newNode()
    await node.start()
    await node.stop()
    expect(openFilesIn(node.dataDir)).toEqual([])
    await expect(node.start()).rejects.toHaveProperty('name', 'NodeStoppedError')
    expect(node.isRunning).toBe(false)
    expect(node.libp2p.status).toBe('stopped')
    // stop() stays idempotent
    await node.stop()
  })
})
