import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, connect } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { BULK_READ_BYTES, bulkReads, readBytesOf, readInBulk } from '../../src/relay/bulk-read.ts'
import { ClientGoneError, HELD_WHILE_OPENING, watchClient } from '../../src/relay/ingress.ts'
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

/** Writes `data` to `s` 100,003 bytes at a time, as the socket drains, then its FIN (unless `end` is false). */
function writeInOddSizes (s: Socket, data: Buffer, { end = true }: { end?: boolean } = {}): void {
  let at = 0
  const pump = (): void => {
    while (at < data.byteLength) {
      const next = Math.min(data.byteLength, at + 100_003)
      const more = s.write(data.subarray(at, next))
      at = next
      if (!more) { s.once('drain', pump); return }
    }
    if (end) s.end()
  }
  pump()
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
      writeInOddSizes(s, blob)
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

/** A server whose accepted sockets readInBulk takes over, each handed to `onSocket`. */
async function bulkServer (onSocket: (s: Socket) => void): Promise<{ server: Server, port: number }> {
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, accepted => {
    const s = readInBulk(accepted)
    s.on('error', () => {})
    onSocket(s)
  })
  return { server, port: await listen(server) }
}

/** Connects to `port` and writes `data` in writes of odd sizes, then its FIN (unless `end` is false). */
function sendTo (port: number, data: Buffer, { end = true }: { end?: boolean } = {}): Socket {
  const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  c.on('error', () => {})
  c.once('connect', () => writeInOddSizes(c, data, { end }))
  return c
}

describe('a socket a server accepted, taken over by readInBulk', () => {
  it('reads in bulk, every byte whole through pauses, writes back, and leaves the server free to close', async () => {
    const blob = randomBytes(12 * MiB)
    let accepted: Socket | undefined
    const { server, port } = await bulkServer(s => {
      accepted = s
      void readAll(s, { pauseEvery: 5 }).then(r => s.end(JSON.stringify(r)))
    })
    const client = sendTo(port, blob)
    const answer = await new Promise<string>((resolve, reject) => {
      let text = ''
      client.on('data', d => { text += String(d) })
      client.once('end', () => resolve(text))
      client.once('error', reject)
    })
    const got = JSON.parse(answer)
    expect(got).toMatchObject({ bytes: blob.byteLength, sha256: sha256(blob) })
    expect(got.largestRead).toBeGreaterThan(64 * 1024)
    expect(got.largestRead).toBeLessThanOrEqual(BULK_READ_BYTES)
    // a second connection left open: the server no longer counts the accepted socket it gave up
    const open = sendTo(port, Buffer.alloc(1), { end: false })
    await new Promise(resolve => open.once('connect', resolve))
    await sleep(50)
    const closed = await Promise.race([new Promise(resolve => server.close(() => resolve('closed'))), sleep(2000).then(() => 'still waiting')])
    expect(closed).toBe('closed')
    expect(accepted?.destroyed).toBe(false)
    // the pump is told how much it reads at most, so a read under that counts as short (its remainder is not held)
    expect(readBytesOf(accepted!)).toBe(BULK_READ_BYTES)
    expect(readBytesOf(open)).toBeUndefined()
    open.destroy()
    client.destroy()
  })
})

describe('a proxy socket watched while its tunnel is being opened', () => {
  /** The server side of a fresh connection, read up to the first byte, as the proxy has after a request; and the client. */
  async function afterRequest (): Promise<{ socket: Socket, client: Socket, close: () => void }> {
    let got: (s: Socket) => void = () => {}
    const server = await bulkServer(s => {
      s.once('data', () => { s.pause(); got(s) })
    })
    const client = connect({ port: server.port, host: '127.0.0.1', allowHalfOpen: true })
    client.on('error', () => {})
    client.write('r')
    const socket = await new Promise<Socket>(resolve => { got = resolve })
    return { socket, client, close: () => { socket.destroy(); client.destroy(); server.server.close() } }
  }

  it('holds what the client sends meanwhile, up to its bound, and hears its FIN after it without taking it for leaving', async () => {
    const { socket, client, close } = await afterRequest()
    const watch = watchClient(socket, false)
    const data = randomBytes(3 * MiB)
    client.end(data)
    await sleep(300)
    const held = watch.stop()
    expect(watch.signal.aborted).toBe(false)
    expect(held.byteLength).toBeGreaterThanOrEqual(HELD_WHILE_OPENING)
    expect(held.byteLength).toBeLessThan(HELD_WHILE_OPENING + BULK_READ_BYTES)
    // paused again: the rest waits for the pump, which resumes it
    const rest = readAll(socket)
    socket.resume()
    const after = await rest
    expect(held.byteLength + after.bytes).toBe(data.byteLength)
    expect(sha256(Buffer.concat([held, data.subarray(held.byteLength)]))).toBe(sha256(data))
    expect(after.sha256).toBe(sha256(data.subarray(held.byteLength)))
    close()
  })

  it('takes a FIN with nothing sent for the target for leaving', async () => {
    const { socket, client, close } = await afterRequest()
    const watch = watchClient(socket, false)
    client.end()
    await Promise.race([new Promise(resolve => watch.signal.addEventListener('abort', resolve)), sleep(3000)])
    expect(watch.signal.reason).toBeInstanceOf(ClientGoneError)
    expect(watch.stop().byteLength).toBe(0)
    close()
  })

  it('hears a reset, though the socket had been paused before it was watched', async () => {
    const { socket, client, close } = await afterRequest()
    const watch = watchClient(socket, true)
    client.resetAndDestroy()
    const heard = await Promise.race([new Promise(resolve => watch.signal.addEventListener('abort', () => resolve('gone'))), sleep(3000).then(() => 'nothing')])
    expect(heard).toBe('gone')
    watch.stop()
    close()
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

describe('a target that speaks first, and a client that does not wait, through a real exit and consumer', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let server: Server
  let port: number
  let hasher: Server
  let hasherPort: number
  const banner = randomBytes(3 * MiB)

  beforeAll(async () => {
    // like an SMTP or SSH server, it sends before it hears anything: here
    // 3 MiB at once, then its FIN, while the exit is still answering the consumer
    server = createServer(s => { s.on('error', () => {}); s.end(banner) })
    port = await listen(server)
    // answers with the hash of all it got, at the client's FIN
    hasher = createServer({ allowHalfOpen: true }, s => {
      s.on('error', () => {})
      void readAll(s).then(r => s.end(`${r.bytes} ${r.sha256}`))
    })
    hasherPort = await listen(hasher)
    ;({ exit, consumer } = await startExitAndConsumer([port, hasherPort], { dataDirPrefix: 'sb-bulk-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    server?.close()
    hasher?.close()
  })

  it('every byte a client sends right behind its SOCKS5 CONNECT, before the reply, reaches the target in order', async () => {
    const socksPort = (consumer.status() as any).proxy.socksPort
    const data = randomBytes(3 * MiB)
    // greeting (no auth) and CONNECT 127.0.0.1:hasherPort, then the data: much of it comes while the tunnel is being opened
    const request = Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, hasherPort >> 8, hasherPort & 0xff])
    const client = sendTo(socksPort, Buffer.concat([request, data]))
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      client.on('data', d => chunks.push(d))
      client.once('end', () => resolve(Buffer.concat(chunks)))
      client.once('error', reject)
    })
    // method choice, then the 10-byte CONNECT reply, then the target's answer
    expect(answer.subarray(0, 4)).toEqual(Buffer.from([0x05, 0x00, 0x05, 0x00]))
    expect(answer.subarray(12).toString()).toBe(`${data.byteLength} ${sha256(data)}`)
    client.destroy()
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
