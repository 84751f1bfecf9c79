/**
 * A consumer node that stops while its proxy clients are mid-download:
 * each client sees its connection reset, never a clean end, so a response
 * whose end is the close of its connection (no length) is not taken for
 * whole. Real curl through the real SOCKS5 and HTTP proxies of an
 * in-process consumer, a real exit, an origin that never finishes.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer } from 'node:net'
import { curl } from '../utils/network.ts'
import { waitFor } from '../utils/cli.ts'
import { startExitAndConsumer } from '../utils/in-process.ts'
import type { Server, Socket, AddressInfo } from 'node:net'
import type { SparebandNode } from '../../src/index.ts'

describe('proxy clients when the consumer node stops', () => {
  let origin: Server
  const sockets = new Set<Socket>()
  let exit: SparebandNode
  let consumer: SparebandNode

  beforeAll(async () => {
    // a close-delimited response (no Content-Length, no chunking) that trickles on for ever
    origin = createServer(socket => {
      sockets.add(socket)
      socket.on('error', () => {})
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n')
        const timer = setInterval(() => { if (!socket.destroyed) socket.write(Buffer.alloc(16 * 1024, 0x61)) }, 20)
        socket.once('close', () => { clearInterval(timer); sockets.delete(socket) })
      })
    })
    await new Promise<void>(resolve => origin.listen(0, '127.0.0.1', resolve))
    ;({ exit, consumer } = await startExitAndConsumer([(origin.address() as AddressInfo).port], { dataDirPrefix: 'sb-proxy-stop-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    for (const s of sockets) s.destroy()
    await new Promise(resolve => origin?.close(resolve))
  })

  it('resets SOCKS5 and HTTP proxy clients mid-download: curl fails, it does not report a whole response', async () => {
    const port = (origin.address() as AddressInfo).port
    const { socksPort, httpPort } = (consumer.status() as any).proxy
    const url = `http://127.0.0.1:${port}/endless`
    const viaSocks = curl(['--socks5-hostname', `127.0.0.1:${socksPort}`, '--proxy-user', 'region-de:x', url], 30_000)
    const viaHttp = curl(['--proxy', `http://127.0.0.1:${httpPort}`, url], 30_000)
    // both are receiving
    await waitFor(() => sockets.size === 2, { what: 'both downloads at the origin', intervalMs: 20 })
    await new Promise(resolve => setTimeout(resolve, 300))
    await consumer.stop()
    const [socks, http] = await Promise.all([viaSocks, viaHttp])
    for (const r of [socks, http]) {
      expect(r.stdout.byteLength).toBeGreaterThan(0)
      // 56: "Failure when receiving data from the peer" (a reset); 0 would say the body was whole
      expect(r.code, r.stderr).toBe(56)
      expect(r.stderr).toMatch(/reset/i)
    }
  })
})
