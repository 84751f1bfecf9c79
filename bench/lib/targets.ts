/**
 * Local TCP targets for the bench, all on 127.0.0.1:
 * - a data server: `D` + 8-byte big-endian length -> that many payload bytes
 *   then FIN; `U` -> counts and hashes everything up to the client's FIN,
 *   then answers `<bytes> <sha256>\n`; `S` + burst bytes + stall ms (4 bytes
 *   each): the same as `U`, but a slow reader (see SlowReader);
 * - an HTTP server answering every request with a few bytes;
 * - a hold server that accepts connections and keeps them open, idle.
 * And the client side of the data protocol, over any connected socket.
 */

import { createServer, connect } from 'node:net'
import { createServer as createHttpServer } from 'node:http'
import { Receiver, chunks } from './data.ts'
import type { AddressInfo, Server, Socket } from 'node:net'
import type { Server as HttpServer } from 'node:http'

export interface Target {
  port: number
  close: () => Promise<void>
}

function track (server: Server | HttpServer): { sockets: Set<Socket>, close: () => Promise<void> } {
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)) })
  return {
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

async function listen (server: Server | HttpServer): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  return (server.address() as AddressInfo).port
}

async function writeAll (socket: Socket, total: number, onWrite?: (bytes: number) => void): Promise<void> {
  for (const c of chunks(total)) {
    onWrite?.(c.byteLength)
    if (!socket.write(c)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = (): void => { socket.off('close', onClose); resolve() }
        const onClose = (): void => { socket.off('drain', onDrain); reject(new Error('socket closed while writing')) }
        socket.once('drain', onDrain)
        socket.once('close', onClose)
      })
    }
  }
}

export interface DataTarget extends Target {
  /** Payload bytes handed to socket.write (downloads) and received (uploads), over all connections. */
  readonly counters: { sent: number, received: number }
}

/** A slow reader: it reads `burstBytes`, then stalls for `stallMs` (a slow link, a busy app). */
export interface SlowReader { burstBytes: number, stallMs: number }

/** Makes `socket` a slow reader; call the returned function with each chunk's size. */
export function throttle (socket: Socket, slow: SlowReader): (bytes: number) => void {
  let burst = 0
  return bytes => {
    burst += bytes
    if (burst >= slow.burstBytes) {
      burst = 0
      socket.pause()
      setTimeout(() => { if (!socket.destroyed) socket.resume() }, slow.stallMs)
    }
  }
}

export async function startDataServer (): Promise<DataTarget> {
  const counters = { sent: 0, received: 0 }
  const server = createServer({ allowHalfOpen: true, noDelay: true }, socket => {
    socket.on('error', () => {})
    let head = Buffer.alloc(0)
    const onData = (d: Buffer): void => {
      head = Buffer.concat([head, d])
      if (head[0] === 0x44 /* D */) {
        if (head.byteLength < 9) return
        socket.off('data', onData)
        const total = Number(head.readBigUInt64BE(1))
        writeAll(socket, total, n => { counters.sent += n }).then(() => socket.end(), () => socket.destroy())
      } else if (head[0] === 0x55 /* U */ || head[0] === 0x53 /* S */) {
        const slow = head[0] === 0x53
        if (slow && head.byteLength < 9) return
        socket.off('data', onData)
        const pace = slow ? throttle(socket, { burstBytes: head.readUInt32BE(1), stallMs: head.readUInt32BE(5) }) : undefined
        const rx = new Receiver()
        const take = (c: Buffer): void => { rx.update(c); counters.received += c.byteLength; pace?.(c.byteLength) }
        const rest = head.subarray(slow ? 9 : 1)
        if (rest.byteLength > 0) take(rest)
        socket.on('data', take)
        socket.once('end', () => socket.end(`${rx.bytes} ${rx.digest()}\n`))
      } else {
        socket.destroy()
      }
    }
    socket.on('data', onData)
  })
  const t = track(server)
  return { port: await listen(server), close: t.close, counters }
}

export async function startHttpServer (): Promise<Target> {
  const body = Buffer.from('ok\n')
  const server = createHttpServer({ keepAlive: false }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.byteLength, connection: 'close' })
    res.end(body)
  })
  const t = track(server)
  return { port: await listen(server), close: t.close }
}

export interface HoldTarget extends Target { readonly open: number }

export async function startHoldServer (): Promise<HoldTarget> {
  // not half-open: when the tunnel's FIN arrives the target closes too, as most servers do
  const server = createServer(socket => { socket.on('error', () => {}) })
  const t = track(server)
  const port = await listen(server)
  return { port, close: t.close, get open () { return t.sockets.size } }
}

export interface TransferResult { bytes: number, sha256: string, ms: number }

export class StallError extends Error {
  constructor (message: string, readonly bytes: number) {
    super(message)
    this.name = 'StallError'
  }
}

/** Rejects when `progress()` has not moved for `stallMs`; call the returned function to stop watching. */
function watchdog (progress: () => number, stallMs: number, onStall: (err: StallError) => void): () => void {
  let last = -1
  let since = Date.now()
  const timer = setInterval(() => {
    const p = progress()
    if (p !== last) { last = p; since = Date.now(); return }
    if (Date.now() - since >= stallMs) {
      clearInterval(timer)
      onStall(new StallError(`no progress for ${stallMs} ms after ${p} bytes`, p))
    }
  }, 250)
  return () => clearInterval(timer)
}

export const DEFAULT_STALL_MS = 20_000

/** Downloads `total` bytes from the data server over an already connected socket (direct or tunnelled). */
export interface TransferOptions {
  /** Fail when no byte moved for this long. */
  stallMs?: number
  /** Downloads: the client is a slow reader. Uploads: the target is. */
  slow?: SlowReader
}

export async function download (socket: Socket, total: number, options: TransferOptions & { onBytes?: (n: number) => void } = {}): Promise<TransferResult> {
  const stallMs = options.stallMs ?? DEFAULT_STALL_MS
  const pace = options.slow != null ? throttle(socket, options.slow) : undefined
  const rx = new Receiver()
  const req = Buffer.alloc(9)
  req[0] = 0x44
  req.writeBigUInt64BE(BigInt(total), 1)
  const started = performance.now()
  let stop = (): void => {}
  try {
    await new Promise<void>((resolve, reject) => {
      stop = watchdog(() => rx.bytes, stallMs, err => { socket.destroy(); reject(err) })
      socket.on('data', (c: Buffer) => { rx.update(c); options.onBytes?.(c.byteLength); pace?.(c.byteLength) })
      socket.once('end', () => resolve())
      socket.once('error', reject)
      socket.once('close', () => reject(new Error(`closed after ${rx.bytes} bytes without FIN`)))
      socket.write(req)
      socket.resume()
    })
  } finally {
    stop()
  }
  const ms = performance.now() - started
  socket.end()
  socket.destroy()
  return { bytes: rx.bytes, sha256: rx.digest(), ms }
}

/** Uploads `total` bytes to the data server; the server's count and hash come back. */
export async function upload (socket: Socket, total: number, options: TransferOptions = {}): Promise<TransferResult> {
  const stallMs = options.stallMs ?? DEFAULT_STALL_MS
  const slow = options.slow
  const started = performance.now()
  let answer = ''
  let stallError: StallError | undefined
  const stop = watchdog(() => socket.bytesWritten - socket.writableLength + answer.length, stallMs, err => { stallError = err; socket.destroy(err) })
  try {
    const done = new Promise<void>((resolve, reject) => {
      socket.setEncoding('utf8')
      socket.on('data', (c: string) => { answer += c })
      socket.once('end', () => resolve())
      socket.once('error', reject)
      socket.once('close', () => reject(new Error('closed before the answer')))
      socket.resume()
    })
    done.catch(() => {})
    if (slow == null) socket.write(Buffer.from('U'))
    else {
      const head = Buffer.alloc(9)
      head[0] = 0x53
      head.writeUInt32BE(slow.burstBytes, 1)
      head.writeUInt32BE(slow.stallMs, 5)
      socket.write(head)
    }
    await writeAll(socket, total)
    socket.end()
    await done
  } catch (err) {
    throw stallError ?? err
  } finally {
    stop()
  }
  const ms = performance.now() - started
  socket.destroy()
  const [bytes, sha256] = answer.trim().split(' ')
  return { bytes: Number(bytes), sha256: sha256 ?? '', ms }
}

export async function connectDirect (port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  return socket
}
