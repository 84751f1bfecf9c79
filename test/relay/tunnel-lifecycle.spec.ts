import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { randomBytes, createHash } from 'node:crypto'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { waitFor } from '../utils/cli.ts'
import { startEchoServer, startExitAndConsumer } from '../utils/in-process.ts'
import type { EchoServer } from '../utils/in-process.ts'
import { socksConnect } from '../utils/socks-client.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { Socket } from 'node:net'

/** Real libp2p nodes over TCP on loopback, in this process: nothing may leak. */
describe('tunnel lifecycle: idle timeout, disappearing sides, concurrency', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let echo: EchoServer
  let echoPort: number
  let targetSockets: Set<Socket>

  beforeAll(async () => {
    echo = await startEchoServer()
    echoPort = echo.port
    targetSockets = echo.sockets
    ;({ exit, consumer } = await startExitAndConsumer([echoPort], { exit: { idle_timeout_seconds: 3 }, dataDirPrefix: 'sb-life-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    await echo?.close()
  })

  const socksPort = (): number => (consumer.status() as any).proxy.socksPort
  const exitOpen = (): number => (exit.status() as any).exit.tunnelsOpen
  const proxyOpen = (): number => (consumer.status() as any).proxy.tunnelsOpen
  // tunnel streams in use: the warm ones, opened ahead of need and idle, are not tunnels
  const warm = (): { ready: number, opening: number } => (consumer.status() as any).proxy.warmStreams
  const tunnelStreams = (): number => consumer.libp2p.getConnections().flatMap(c => c.streams).filter(s => s.protocol === TUNNEL_PROTOCOL).length - warm().ready
  const allClosed = async (what: string): Promise<void> => {
    await waitFor(() => exitOpen() === 0 && proxyOpen() === 0 && warm().opening === 0 && tunnelStreams() === 0 && targetSockets.size === 0, { timeoutMs: 10_000, what: `${what} (exit ${exitOpen()}, proxy ${proxyOpen()}, streams ${tunnelStreams()}, target sockets ${targetSockets.size})` })
    // warm streams are bounded by the pool size, whatever the tunnels did
    expect(warm().ready).toBeLessThanOrEqual(8)
  }

  it('echoes through the tunnel', async () => {
    const { socket, reply } = await socksConnect(socksPort(), '127.0.0.1', echoPort)
    expect(reply).toBe(0)
    const got = new Promise<string>(resolve => socket.once('data', d => resolve(d.toString())))
    socket.write('ping')
    expect(await got).toBe('ping')
    socket.destroy()
    await allClosed('the tunnel to close after the client left')
  })

  it('closes a tunnel that idles past the timeout', async () => {
    const { socket, reply } = await socksConnect(socksPort(), '127.0.0.1', echoPort)
    expect(reply).toBe(0)
    const t = Date.now()
    await new Promise(resolve => socket.once('close', resolve))
    const ms = Date.now() - t
    expect(ms).toBeGreaterThanOrEqual(2900)
    expect(ms).toBeLessThan(8000)
    await allClosed('idle tunnel cleanup')
  })

  it('a target that resets reaches the client as a reset, and nothing is left behind', async () => {
    const { socket, reply } = await socksConnect(socksPort(), '127.0.0.1', echoPort)
    expect(reply).toBe(0)
    await waitFor(() => targetSockets.size === 1, { what: 'the target connection' })
    const errored = new Promise<string>(resolve => {
      socket.once('error', (e: any) => resolve(e.code))
      socket.once('close', () => resolve('closed'))
    })
    for (const s of targetSockets) s.resetAndDestroy()
    expect(['ECONNRESET', 'closed']).toContain(await errored)
    await allClosed('cleanup after a target reset')
  })

  it('100 concurrent tunnels over one connection each echo their own bytes', async () => {
    const n = 100
    const results = await Promise.all(Array.from({ length: n }, async () => {
      const data = randomBytes(64 * 1024)
      const { socket, reply } = await socksConnect(socksPort(), '127.0.0.1', echoPort)
      expect(reply).toBe(0)
      const h = createHash('sha256')
      let got = 0
      const done = new Promise<void>(resolve => socket.on('data', d => { h.update(d); got += d.byteLength; if (got >= data.byteLength) resolve() }))
      socket.write(data)
      await done
      socket.end()
      return h.digest('hex') === createHash('sha256').update(data).digest('hex')
    }))
    expect(results.filter(Boolean)).toHaveLength(n)
    // one libp2p connection carried them all
    expect(consumer.libp2p.getConnections(exit.peerId)).toHaveLength(1)
    await allClosed('100 tunnels to close')
    expect((exit.status() as any).exit.tunnelsTotal).toBeGreaterThanOrEqual(n)
  })

  it('a slow reader gets every byte: backpressure holds instead of overflowing the read buffer', async () => {
    // 64 MiB echoed back to a client that reads 4 MiB, then stalls for 300 ms, and so on
    const total = 64 * 1024 * 1024
    const { socket, reply } = await socksConnect(socksPort(), '127.0.0.1', echoPort)
    expect(reply).toBe(0)
    const block = randomBytes(1024 * 1024)
    const want = createHash('sha256')
    for (let i = 0; i < total / block.byteLength; i++) want.update(block)
    const got = createHash('sha256')
    let received = 0
    let sinceStall = 0
    const done = new Promise<void>((resolve, reject) => {
      socket.on('data', d => {
        got.update(d)
        received += d.byteLength
        sinceStall += d.byteLength
        if (sinceStall >= 4 * 1024 * 1024) {
          sinceStall = 0
          socket.pause()
          setTimeout(() => socket.resume(), 300)
        }
        if (received >= total) resolve()
      })
      socket.once('error', () => {})
      socket.once('close', () => { if (received < total) reject(new Error(`closed after ${received} of ${total} bytes`)) })
    })
    let written = 0
    const writeMore = (): void => {
      while (written < total) {
        written += block.byteLength
        if (!socket.write(block)) { socket.once('drain', writeMore); return }
      }
      socket.end()
    }
    writeMore()
    await done
    expect(got.digest('hex')).toBe(want.digest('hex'))
    socket.destroy()
    await allClosed('the slow tunnel to close')
  })

  it('an exit that stops mid-tunnel closes the client side', async () => {
    const { socket, reply } = await socksConnect(socksPort(), '127.0.0.1', echoPort)
    expect(reply).toBe(0)
    const closed = new Promise(resolve => socket.once('close', resolve))
    await exit.stop()
    await closed
    await waitFor(() => proxyOpen() === 0 && tunnelStreams() === 0 && targetSockets.size === 0, { timeoutMs: 10_000, what: 'cleanup after the exit stopped' })
  })
})
