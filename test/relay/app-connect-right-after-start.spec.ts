import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { createSparebandNode } from '../../src/index.ts'
import { startEchoServer } from '../utils/in-process.ts'
import { tempDir } from '../utils/cli.ts'
import type { EchoServer } from '../utils/in-process.ts'
import type { SparebandNode, SparebandConfigInput } from '../../src/index.ts'

/**
 * What an app does first: start a node with a bootstrap peer and connect
 * at once. start() may resolve before the bootstrap peer is dialled (100 ms
 * later), and the region's DHT lookup then starts with no peer in the
 * routing table: it must wait for one rather than ask no one and answer
 * NO_EXIT (which it did after about a second).
 */
describe('node.connect() right after start()', () => {
  let exit: SparebandNode
  let echo: EchoServer
  const nodes: SparebandNode[] = []
  const base: SparebandConfigInput = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8 } }

  beforeAll(async () => {
    echo = await startEchoServer()
    exit = await createSparebandNode({ dataDir: await tempDir('sb-connect-first-'), config: { ...base, region: 'de', network: { local_testnet: true }, exit: { allow_private_targets: true, allowed_ports: [echo.port] } } })
    await exit.start()
  })
  afterAll(async () => {
    for (const n of nodes) await n.stop()
    await exit?.stop()
    await echo?.close()
  })

  it('a lookup that starts before the node has a peer waits for one, finds the exit and carries bytes', async () => {
    // no bootstrap: the peer arrives 300 ms after connect() began, as a bootstrap peer does when start() resolves first
    const consumer = await createSparebandNode({ dataDir: await tempDir('sb-connect-first-'), config: { ...base, network: { local_testnet: true }, exit: { enabled: false } } })
    nodes.push(consumer)
    await consumer.start()
    expect(consumer.libp2p.getConnections()).toEqual([])
    const started = Date.now()
    const connecting = consumer.connect('127.0.0.1', echo.port, { region: 'de' })
    setTimeout(() => { void consumer.libp2p.dial(multiaddr(exit.status().addresses[0])).catch(() => {}) }, 300)
    const socket = await connecting
    const tookMs = Date.now() - started
    expect(socket.exit).toBe(exit.peerId.toString())
    expect(tookMs).toBeLessThan(10_000)
    // setupMs counts from the call: the wait for a peer and the exit search too, not only the exit's answer
    expect(socket.setupMs).toBeGreaterThanOrEqual(300)
    expect(socket.setupMs).toBeLessThanOrEqual(tookMs + 1)
    socket.end('hello')
    const back = await new Promise<string>((resolve, reject) => {
      let text = ''
      socket.on('data', (c: Buffer) => { text += c.toString() })
      socket.on('end', () => resolve(text))
      socket.on('error', reject)
    })
    expect(back).toBe('hello')
  })

  it('with a bootstrap peer, connect() at once after start() works, every time', async () => {
    for (let i = 0; i < 3; i++) {
      const consumer = await createSparebandNode({ dataDir: await tempDir('sb-connect-first-'), config: { ...base, network: { local_testnet: true, bootstrap: exit.status().addresses }, exit: { enabled: false } } })
      nodes.push(consumer)
      await consumer.start()
      const socket = await consumer.connect('127.0.0.1', echo.port, { region: 'de' })
      expect(socket.exit).toBe(exit.peerId.toString())
      socket.destroy()
    }
  })

  it('a start that failed (its proxy port taken) and is tried again finds exits: nothing of the failed start stays stopped', async () => {
    const blocker = createServer()
    await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
    const taken = (blocker.address() as AddressInfo).port
    const consumer = await createSparebandNode({ dataDir: await tempDir('sb-connect-first-'), config: { ...base, proxy: { socks_port: taken, http_port: 0 }, network: { local_testnet: true, bootstrap: exit.status().addresses }, exit: { enabled: false } } })
    nodes.push(consumer)
    await expect(consumer.start()).rejects.toHaveProperty('name', 'AddressInUseError')
    await new Promise(resolve => blocker.close(resolve))
    await consumer.start()
    const socket = await consumer.connect('127.0.0.1', echo.port, { region: 'de' })
    expect(socket.exit).toBe(exit.peerId.toString())
    socket.destroy()
  })
})
