/**
 * A local HTTP origin for tunnel tests: serves a random blob and hashes
 * uploads, and counts every TCP connection it accepts, so a test can prove
 * that a refused tunnel never reached it.
 */

import { createServer } from 'node:http'
import { createServer as createNetServer, connect } from 'node:net'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface TargetServer {
  port: number
  blob: Buffer
  blobSha256: string
  connections: number
  /** The remote address of each connection accepted, in order: who dialled it. */
  remotes: string[]
  requests: string[]
  /** Bytes received on /upload so far, counted as they arrive (an upload cut short still counts what got here). */
  uploaded: number
  close: () => Promise<void>
}

export function sha256 (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** `host` is where it listens: 127.0.0.1 unless a test (in a network namespace) names another of its own addresses. */
export async function startTargetServer (blobBytes = 64 * 1024 * 1024, { host = '127.0.0.1' }: { host?: string } = {}): Promise<TargetServer> {
  const blob = randomBytes(blobBytes)
  const target: TargetServer = { port: 0, blob, blobSha256: sha256(blob), connections: 0, remotes: [], requests: [], uploaded: 0, close: async () => {} }
  const server: Server = createServer((req, res) => {
    target.requests.push(`${req.method} ${req.url}`)
    if (req.url === '/blob') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.byteLength })
      res.end(blob)
    } else if (req.url === '/upload' && req.method === 'POST') {
      const h = createHash('sha256')
      let n = 0
      req.on('data', (c: Buffer) => { h.update(c); n += c.byteLength; target.uploaded += c.byteLength })
      req.on('end', () => { res.end(JSON.stringify({ bytes: n, sha256: h.digest('hex') })) })
    } else if (req.url === '/drip') {
      // the blob at about 6 MB/s, so a transfer is surely still running a moment after it started
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.byteLength })
      let at = 0
      const timer = setInterval(() => {
        const end = Math.min(blob.byteLength, at + 64 * 1024)
        res.write(blob.subarray(at, end))
        at = end
        if (at >= blob.byteLength) { clearInterval(timer); res.end() }
      }, 10)
      res.on('close', () => clearInterval(timer))
    } else if (req.url?.startsWith('/slice/') === true) {
      const n = Number(req.url.slice('/slice/'.length))
      res.writeHead(200, { 'content-length': n })
      res.end(blob.subarray(0, n))
    } else {
      res.end('hello from the target\n')
    }
  })
  server.on('connection', socket => { target.connections++; target.remotes.push(socket.remoteAddress ?? '') })
  await new Promise<void>(resolve => server.listen(0, host, resolve))
  target.port = (server.address() as AddressInfo).port
  target.close = async () => {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  return target
}

/**
 * A port on 127.0.0.1 where connecting hangs, as with a dead host: a
 * listening socket nobody accepts on (a `sleep` child holds it), its
 * accept queue filled, so the kernel drops further SYNs and every connect
 * times out.
 */
export async function startBlackhole (): Promise<{ port: number, close: () => Promise<void> }> {
  const server = createNetServer()
  await new Promise<void>(resolve => server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, resolve))
  const port = (server.address() as AddressInfo).port
  const holder = spawn('sleep', ['3600'], { stdio: ['ignore', 'ignore', 'ignore', (server as any)._handle.fd] })
  await new Promise<void>(resolve => server.close(() => resolve()))
  const fillers = Array.from({ length: 4 }, () => connect(port, '127.0.0.1').on('error', () => {}))
  await new Promise(resolve => setTimeout(resolve, 200))
  return {
    port,
    close: async () => {
      for (const f of fillers) f.destroy()
      holder.kill()
    }
  }
}

export interface ClosedDoor {
  port: number
  /** Remote ports of the connections accepted once the door opened, the fillers' left out: who else got through. */
  others: () => number[]
  /** Starts accepting: the queued fillers, and any connect still retrying its SYN, get in. */
  open: () => Promise<void>
  close: () => Promise<void>
}

/**
 * A blackhole (see startBlackhole) that can be opened later to see who was
 * still trying to get in: a child process holds the listening socket and,
 * told to, accepts on it and reports each connection's remote port. A
 * connect that was abandoned (its socket destroyed) stops sending SYNs and
 * never shows up; one still under way gets in at its next SYN retry.
 */
export async function startClosedDoor (): Promise<ClosedDoor> {
  const server = createNetServer()
  await new Promise<void>(resolve => server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, resolve))
  const port = (server.address() as AddressInfo).port
  const script = `
    const net = require('node:net')
    process.stdin.once('data', () => {
      const door = net.createServer(s => { s.on('error', () => {}); process.stdout.write('in ' + s.remotePort + '\\n') })
      door.listen({ fd: 3 }, () => process.stdout.write('open\\n'))
    })
    process.stdin.on('end', () => process.exit(0))`
  const holder = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit', (server as any)._handle.fd] })
  await new Promise<void>(resolve => server.close(() => resolve()))
  const fillers = Array.from({ length: 4 }, () => connect(port, '127.0.0.1').on('error', () => {}))
  await new Promise(resolve => setTimeout(resolve, 200))
  const fillerPorts = new Set(fillers.map(f => f.localPort))
  if (fillerPorts.has(undefined)) throw new Error('a filler connection has no local port')
  const seen: number[] = []
  let opened: () => void = () => {}
  const isOpen = new Promise<void>(resolve => { opened = resolve })
  let text = ''
  holder.stdout!.on('data', (chunk: Buffer) => {
    text += chunk.toString()
    const lines = text.split('\n')
    text = lines.pop() ?? ''
    for (const line of lines) {
      if (line === 'open') opened()
      else if (line.startsWith('in ')) seen.push(Number(line.slice(3)))
    }
  })
  return {
    port,
    others: () => seen.filter(p => !fillerPorts.has(p)),
    open: async () => {
      holder.stdin!.write('open\n')
      await isOpen
    },
    close: async () => {
      for (const f of fillers) f.destroy()
      const exited = new Promise(resolve => holder.once('exit', resolve))
      holder.stdin!.end()
      holder.kill()
      await exited
    }
  }
}
