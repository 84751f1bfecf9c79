/**
 * A minimal SOCKS5 client (RFC 1928 CONNECT, with RFC 1929 user/password
 * when given) over node:net, for the benches and the tests: greeting, wait
 * for the method, CONNECT, wait for the reply, then the connection is the
 * tunnel. Unlike curl it sends any host string as a domain name ("127.1",
 * "0x7f.1", "::1"), and it hands back the exact reply code.
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

/** performance.now() when the TCP connection to the proxy was up, the method chosen, the CONNECT answered. */
export interface Socks5Timings {
  connected?: number
  method?: number
  reply?: number
}

export interface Socks5Options {
  proxyHost?: string
  /** RFC 1929 credentials (the proxy user name selects the exit: `region-<r>[-session-<id>]`). */
  user?: string
  password?: string
  /** How the target goes out: 'domain' (any string, unresolved) or 'ipv4' (a dotted quad). @default 'domain' */
  addressType?: 'domain' | 'ipv4'
  /** The whole handshake must be done by then. @default 30 s */
  timeoutMs?: number
  timings?: Socks5Timings
  /** Keep our side open after the far end's FIN (to go on sending after the answer). @default false */
  allowHalfOpen?: boolean
}

export interface Socks5Result {
  /** The proxy's reply code (0 = succeeded), or -1 when it refused our credentials. */
  reply: number
  /** Paused; bytes that came behind the reply are unshifted, so nothing is lost before the caller reads. */
  socket: Socket
}

/** Reads exactly `n` bytes; the socket is paused between reads so nothing flows past us. */
async function readExactly (socket: Socket, n: number, buffered: { buf: Buffer }): Promise<Buffer> {
  while (buffered.buf.byteLength < n) {
    const chunk = await new Promise<Buffer>((resolve, reject) => {
      const onData = (d: Buffer): void => { socket.pause(); cleanup(); resolve(d) }
      const onEnd = (): void => { cleanup(); reject(new Socks5Error(`proxy closed the connection during the handshake (${buffered.buf.byteLength}/${n} bytes)`)) }
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

function targetAddress (host: string, addressType: 'domain' | 'ipv4'): Buffer {
  if (addressType === 'ipv4') {
    if (!isIPv4(host)) throw new Socks5Error(`${host} is not a dotted IPv4 address`)
    return Buffer.from([1, ...host.split('.').map(Number)])
  }
  return Buffer.concat([Buffer.from([3, Buffer.byteLength(host)]), Buffer.from(host)])
}

/** Runs the handshake through to the proxy's reply, whatever it is: the caller checks `reply`. */
export async function socks5Handshake (proxyPort: number, host: string, port: number, options: Socks5Options = {}): Promise<Socks5Result> {
  const timings = options.timings ?? {}
  const socket = connect({ host: options.proxyHost ?? '127.0.0.1', port: proxyPort, allowHalfOpen: options.allowHalfOpen ?? false, noDelay: true })
  const timer = setTimeout(() => socket.destroy(new Socks5Error('SOCKS5 handshake timed out')), options.timeoutMs ?? 30_000)
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    timings.connected = performance.now()
    const buffered = { buf: Buffer.alloc(0) }
    const auth = options.user != null
    socket.write(Uint8Array.of(5, 1, auth ? 2 : 0))
    const method = await readExactly(socket, 2, buffered)
    if (method[0] !== 5 || method[1] !== (auth ? 2 : 0)) throw new Socks5Error(`proxy chose method ${method[1]}`)
    if (auth) {
      const u = Buffer.from(options.user ?? '')
      const p = Buffer.from(options.password ?? '')
      socket.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]))
      const status = await readExactly(socket, 2, buffered)
      if (status[1] !== 0) return { reply: -1, socket }
    }
    timings.method = performance.now()
    socket.write(Buffer.concat([Buffer.from([5, 1, 0]), targetAddress(host, options.addressType ?? 'domain'), Buffer.from([port >> 8, port & 0xff])]))
    const head = await readExactly(socket, 4, buffered)
    const atyp = head[3]
    const addrLen = atyp === 1 ? 4 : atyp === 4 ? 16 : (await readExactly(socket, 1, buffered))[0]
    await readExactly(socket, addrLen + 2, buffered)
    timings.reply = performance.now()
    socket.pause()
    if (buffered.buf.byteLength > 0) socket.unshift(buffered.buf)
    return { reply: head[1], socket }
  } catch (err) {
    socket.destroy()
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Connects through the proxy to host:port (a dotted IPv4 address goes as
 * one), half-open allowed, as a bulk client wants it. Resolves with a paused
 * socket that carries the tunnel; throws Socks5Error unless the proxy
 * succeeded.
 */
export async function socks5Connect (proxyPort: number, host: string, port: number, options: Socks5Options = {}): Promise<Socket> {
  const { reply, socket } = await socks5Handshake(proxyPort, host, port, { addressType: isIPv4(host) ? 'ipv4' : 'domain', allowHalfOpen: true, ...options })
  if (reply === 0) return socket
  socket.destroy()
  throw new Socks5Error(reply === -1 ? 'proxy refused the credentials' : `SOCKS5 reply ${reply} (${REPLY_NAMES[reply] ?? 'unknown'})`, reply)
}
