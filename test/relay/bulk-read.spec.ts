import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, connect } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { BULK_READ_BYTES, bulkReads } from '../../src/relay/bulk-read.ts'
import { dial } from '../../src/relay/exit.ts'
import { startExitAndConsumer } from '../utils/in-process.ts'
import { socksConnect } from '../utils/socks-client.ts'
import type { AddressInfo, Server, Socket } from 'node:net'
import type { SparebandNode } from '../../src/index.ts'

const MiB = 1024 * 1024
const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex')

async function listen (server: Server): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/** Everything a socket reads until its FIN, hashed at the end, with what the reads looked like. */
async function readAll (socket: Socket, options: { pauseEvery?: number } = {}): Promise<{ sha256: string, bytes: number, largestRead: number }> {
  // the chunks are kept and hashed only at the FIN: a chunk that shared memory with a
  // buffer the next read overwrites would be caught, as it would not by hashing it at once
  const chunks: Buffer[] = []
  let bytes = 0
  let largestRead = 0
  let reads = 0
  return new Promise((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      chunks.push(d)
      bytes += d.byteLength
      largestRead = Math.max(largestRead, d.byteLength)
      // a reader that stops now and then: the bytes read while it was
      // paused must not be dropped, nor the shared buffer's next read land in them
      if (options.pauseEvery != null && ++reads % options.pauseEvery === 0) {
        socket.pause()
        setTimeout(() => socket.resume(), 2)
      }
    })
    socket.once('end', () => resolve({ sha256: sha256(Buffer.concat(chunks)), bytes, largestRead }))
    socket.once('error', reject)
  })
}

describe('bulk reads: one shared read buffer for the sockets we connect', () => {
  let server: Server
  let port: number
  const blobs: Buffer[] = []

  beforeAll(async () => {
    for (let i = 0; i < 4; i++) blobs.push(randomBytes(12 * MiB))
    // the n-th connection gets blob n, in writes of odd sizes
    let n = 0
    server = createServer(s => {
      const blob = blobs[n++ % blobs.length]
      s.on('error', () => {})
      let at = 0
      const pump = (): void => {
        while (at < blob.byteLength) {
          const end = Math.min(blob.byteLength, at + 100_003)
          const more = s.write(blob.subarray(at, end))
          at = end
          if (!more) { s.once('drain', pump); return }
        }
        s.end()
      }
      pump()
    })
    port = await listen(server)
  })
  afterAll(() => { server?.close() })

  it('four sockets reading at once each get their own bytes, whole, through pauses', async () => {
    const sockets = blobs.map(() => {
      const s = connect({ port, host: '127.0.0.1', onread: bulkReads() })
      return s
    })
    const results = await Promise.all(sockets.map(async (s, i) => readAll(s, { pauseEvery: 3 + i })))
    // connections are accepted in the order they were made
    results.sort((a, b) => a.sha256 < b.sha256 ? -1 : 1)
    const want = blobs.map(b => ({ sha256: sha256(b), bytes: b.byteLength })).sort((a, b) => a.sha256 < b.sha256 ? -1 : 1)
    expect(results.map(r => ({ sha256: r.sha256, bytes: r.bytes }))).toEqual(want)
    // reads larger than node's own 64 KiB happened, and none beyond the shared buffer
    expect(Math.max(...results.map(r => r.largestRead))).toBeGreaterThan(64 * 1024)
    expect(Math.max(...results.map(r => r.largestRead))).toBeLessThanOrEqual(BULK_READ_BYTES)
    for (const s of sockets) s.destroy()
  })

  it('a socket paused before it connects reads nothing until it is resumed', async () => {
    const s = connect({ port, host: '127.0.0.1', onread: bulkReads() })
    s.pause()
    let early = 0
    const count = (d: Buffer): void => { early += d.byteLength }
    s.on('data', count)
    await new Promise(resolve => s.once('connect', resolve))
    await sleep(200)
    expect(early).toBe(0)
    s.off('data', count)
    const result = readAll(s)
    s.resume()
    const got = await result
    expect(got.bytes).toBe(12 * MiB)
    expect(blobs.map(sha256)).toContain(got.sha256)
    s.destroy()
  })
})

describe('the exit\'s dial to a target', () => {
  it('hands back a socket that reads nothing until the pump resumes it: what a target sends first waits', async () => {
    const banner = randomBytes(3 * MiB)
    const server = createServer(s => { s.on('error', () => {}); s.end(banner) })
    const port = await listen(server)
    try {
      const socket = await dial('127.0.0.1', port, 5_000, new AbortController().signal)
      // the banner is in our receive buffer by now, and would be read (and lost: nobody listens) unless paused
      await sleep(150)
      const result = readAll(socket)
      socket.resume()
      // read and dropped, the banner's FIN went with it: nothing would ever end the read
      const ended = await Promise.race([result, sleep(10_000).then(() => undefined)])
      expect(ended).toMatchObject({ bytes: banner.byteLength, sha256: sha256(banner) })
      socket.destroy()
    } finally {
      server.close()
    }
  })
})

describe('a target that speaks first, through a real exit and consumer', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let server: Server
  let port: number
  const banner = randomBytes(3 * MiB)

  beforeAll(async () => {
    // like an SMTP or SSH server, it sends before it hears anything: here
    // 3 MiB at once, then its FIN, while the exit is still answering the consumer
    server = createServer(s => { s.on('error', () => {}); s.end(banner) })
    port = await listen(server)
    ;({ exit, consumer } = await startExitAndConsumer([port], { dataDirPrefix: 'sb-bulk-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    server?.close()
  })

  it('every byte it sent before the tunnel was up reaches the client', async () => {
    const socksPort = (consumer.status() as any).proxy.socksPort
    for (let i = 0; i < 3; i++) {
      const { socket, reply } = await socksConnect(socksPort, '127.0.0.1', port)
      expect(reply).toBe(0)
      const result = readAll(socket)
      socket.resume()
      expect(await result).toMatchObject({ bytes: banner.byteLength, sha256: sha256(banner) })
      socket.destroy()
    }
  })
})
