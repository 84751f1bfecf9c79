/**
 * A minimal SOCKS5 client (RFC 1928 CONNECT, no authentication) over
 * node:net, as a browser or curl would use the proxy: greeting, wait for the
 * method, CONNECT, wait for the reply, then the connection is the tunnel.
 */

import { connect, isIPv4 } from 'node:net'
import type { Socket } from 'node:net'

export class Socks5Error extends Error {
  constructor (message: string, readonly reply?: number) {
    super(message)
    this.name = 'Socks5Error'
  }
}

const REPLY_NAMES: Record<number, string> = {
  1: 'general failure', 2: 'not allowed by ruleset', 3: 'network unreachable', 4: 'host unreachable',
  5: 'connection refused', 6: 'TTL expired', 7: 'command not supported', 8: 'address type not supported'
}

/** Reads exactly `n` bytes (more may be pushed back with unshift). */
async function readExactly (socket: Socket, n: number, buffered: { buf: Buffer }): Promise<Buffer> {
  while (buffered.buf.byteLength < n) {
    const chunk = await new Promise<Buffer>((resolve, reject) => {
      const onData = (d: Buffer): void => { socket.pause(); cleanup(); resolve(d) }
      const onEnd = (): void => { cleanup(); reject(new Socks5Error('proxy closed the connection during the handshake')) }
      const onError = (e: Error): void => { cleanup(); reject(e) }
      const cleanup = (): void => { socket.off('data', onData); socket.off('end', onEnd); socket.off('error', onError); socket.off('close', onEnd) }
      socket.on('data', onData)
      socket.once('end', onEnd)
      socket.once('close', onEnd)
      socket.once('error', onError)
      socket.resume()
    })
    buffered.buf = Buffer.concat([buffered.buf, chunk])
  }
  const out = buffered.buf.subarray(0, n)
  buffered.buf = buffered.buf.subarray(n)
  return out
}

/**
 * Connects through the proxy to host:port. Resolves with a paused socket
 * that carries the tunnel; bytes that came behind the reply are unshifted.
 */
export interface Socks5Timings {
  /** performance.now() when the TCP connection to the proxy was up, the method chosen, the CONNECT answered. */
  connected?: number
  method?: number
  reply?: number
}

export async function socks5Connect (proxyPort: number, host: string, port: number, options: { proxyHost?: string, timeoutMs?: number, timings?: Socks5Timings } = {}): Promise<Socket> {
  const timings = options.timings ?? {}
  const socket = connect({ host: options.proxyHost ?? '127.0.0.1', port: proxyPort, allowHalfOpen: true, noDelay: true })
  const timer = setTimeout(() => socket.destroy(new Socks5Error('SOCKS5 handshake timed out')), options.timeoutMs ?? 30_000)
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    timings.connected = performance.now()
    const buffered = { buf: Buffer.alloc(0) }
    socket.write(Uint8Array.of(5, 1, 0))
    const method = await readExactly(socket, 2, buffered)
    if (method[0] !== 5 || method[1] !== 0) throw new Socks5Error(`proxy chose method ${method[1]}`)
    timings.method = performance.now()
    let addr: Buffer
    if (isIPv4(host)) addr = Buffer.from([1, ...host.split('.').map(Number)])
    else addr = Buffer.concat([Buffer.from([3, Buffer.byteLength(host)]), Buffer.from(host)])
    socket.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, Buffer.from([port >> 8, port & 0xff])]))
    const head = await readExactly(socket, 4, buffered)
    if (head[1] !== 0) throw new Socks5Error(`SOCKS5 reply ${head[1]} (${REPLY_NAMES[head[1]] ?? 'unknown'})`, head[1])
    const atyp = head[3]
    const addrLen = atyp === 1 ? 4 : atyp === 4 ? 16 : (await readExactly(socket, 1, buffered))[0]
    await readExactly(socket, addrLen + 2, buffered)
    timings.reply = performance.now()
    socket.pause()
    if (buffered.buf.byteLength > 0) socket.unshift(buffered.buf)
    return socket
  } catch (err) {
    socket.destroy()
    throw err
  } finally {
    clearTimeout(timer)
  }
}
