/**
 * The TCP listener both proxies share: bind (refusing non-loopback binds
 * without credentials), track client sockets, stop. Subclasses speak their
 * protocol in `onConnection`.
 */

import { createServer } from 'node:net'
import { second } from '../constants.ts'
import { readInBulk } from './bulk-read.ts'
import { AddressInUseError, formatHostPort, notOwnAddress } from '../errors.ts'
import type { Ingress } from './ingress.ts'
import type { AddressInfo, Server, Socket } from 'node:net'

export abstract class ProxyListener {
  private server?: Server
  /** The port actually bound (useful when 0 was asked for). */
  port = 0

  /**
   * Which setting chooses the port, named when the port is in use so the
   * operator knows what to change, e.g. "proxy.socks_port / --socks-port".
   * Set by whoever built the listener from config.
   */
  setting?: string

  constructor (protected readonly ingress: Ingress, private readonly host: string, private readonly requestedPort: number, private readonly what: string) {}

  async start (): Promise<void> {
    this.ingress.checkBindAllowed(this.host, this.what)
    // paused on connect: readInBulk takes over the socket before it reads
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, accepted => {
      const socket = readInBulk(accepted)
      this.ingress.track(socket)
      socket.on('error', () => {})
      this.onConnection(socket)
    })
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => {
        if (err.code === 'EADDRNOTAVAIL') { reject(notOwnAddress(`${this.what} (proxy.host / --proxy-host)`, 'proxy.host', this.host)); return }
        if (err.code !== 'EADDRINUSE') { reject(err); return }
        const address = formatHostPort(this.host, this.requestedPort)
        const what = this.setting == null ? this.what : `${this.what} (${this.setting})`
        reject(new AddressInUseError(`${what}: ${address} is in use`, { address }))
      }
      server.once('error', failed)
      server.listen(this.requestedPort, this.host, () => { server.off('error', failed); resolve() })
    })
    this.server = server
    this.port = (server.address() as AddressInfo).port
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = undefined
    await new Promise<void>(resolve => server.close(() => resolve()))
  }

  protected abstract onConnection (socket: Socket): void
}

/**
 * How long a refused client may go on sending (the rest of its request
 * body) after the answer, which is read and dropped meanwhile; then the
 * connection is dropped.
 */
export const REFUSED_LINGER_MS = 10 * second

/**
 * Sends a proxy's refusal (`answer`, if any) and closes. What the client
 * still sends is read and dropped, for up to REFUSED_LINGER_MS, then the
 * connection is dropped: a client that writes its whole body before it
 * reads the answer (Python's http.client and requests do) otherwise blocks
 * on a full socket buffer until its own timeout and never sees the answer;
 * and a proxy socket paused while its tunnel was being opened reads
 * nothing at all (bulk-read.ts), so it would never hear the client's FIN
 * and stay open for good.
 */
export function endRefused (socket: Socket, answer?: Uint8Array | string): void {
  if (socket.destroyed) return
  if (answer == null) socket.end()
  else socket.end(answer)
  const linger = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS)
  socket.once('close', () => clearTimeout(linger))
  socket.resume()
}
