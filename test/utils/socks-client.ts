/**
 * A raw SOCKS5 client for tests that need what curl will not send: host
 * strings such as "127.1" or "0x7f.1" as domain names, exact reply codes.
 */

import { connect } from 'node:net'
import type { Socket } from 'node:net'

export interface SocksResult { reply: number, socket: Socket }

function readExactly (socket: Socket, n: number, buffered: { buf: Buffer }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tryRead = (): boolean => {
      if (buffered.buf.byteLength >= n) {
        const out = buffered.buf.subarray(0, n)
        buffered.buf = buffered.buf.subarray(n)
        resolve(out)
        return true
      }
      return false
    }
    if (tryRead()) return
    const onData = (d: Buffer): void => {
      buffered.buf = Buffer.concat([buffered.buf, d])
      if (tryRead()) cleanup()
    }
    const onEnd = (): void => { cleanup(); reject(new Error(`socket closed after ${buffered.buf.byteLength}/${n} bytes`)) }
    const cleanup = (): void => { socket.off('data', onData); socket.off('close', onEnd); socket.off('end', onEnd) }
    socket.on('data', onData)
    socket.once('close', onEnd)
    socket.once('end', onEnd)
  })
}

/** Opens a SOCKS5 CONNECT; `host` goes as a domain name unless `addressType` says otherwise. */
export async function socksConnect (proxyPort: number, host: string, port: number, options: { user?: string, password?: string, addressType?: 'domain' | 'ipv4' } = {}): Promise<SocksResult> {
  const socket = connect({ host: '127.0.0.1', port: proxyPort })
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const state = { buf: Buffer.alloc(0) }
  const auth = options.user != null
  socket.write(Buffer.from([5, 1, auth ? 2 : 0]))
  const method = await readExactly(socket, 2, state)
  if (method[1] === 2) {
    const u = Buffer.from(options.user ?? '')
    const p = Buffer.from(options.password ?? '')
    socket.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]))
    const status = await readExactly(socket, 2, state)
    if (status[1] !== 0) return { reply: -1, socket }
  }
  let addr: Buffer
  if (options.addressType === 'ipv4') addr = Buffer.from([1, ...host.split('.').map(Number)])
  else addr = Buffer.concat([Buffer.from([3, Buffer.byteLength(host)]), Buffer.from(host)])
  socket.write(Buffer.concat([Buffer.from([5, 1, 0]), addr, Buffer.from([port >> 8, port & 0xff])]))
  const head = await readExactly(socket, 4, state)
  const atyp = head[3]
  const rest = atyp === 1 ? 6 : atyp === 4 ? 18 : (await readExactly(socket, 1, state))[0] + 2
  await readExactly(socket, rest, state)
  if (state.buf.byteLength > 0) socket.unshift(state.buf)
  return { reply: head[1], socket }
}
