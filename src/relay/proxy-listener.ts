/**
 * The TCP listener both proxies share: bind (refusing non-loopback binds
 * without credentials), track client sockets, stop. Subclasses speak their
 * protocol in `onConnection`.
 */

import { createServer } from 'node:net'
import type { Ingress } from './ingress.ts'
import type { AddressInfo, Server, Socket } from 'node:net'

export abstract class ProxyListener {
  private server?: Server
  /** The port actually bound (useful when 0 was asked for). */
  port = 0

  constructor (protected readonly ingress: Ingress, private readonly host: string, private readonly requestedPort: number, private readonly what: string) {}

  async start (): Promise<void> {
    this.ingress.checkBindAllowed(this.host, this.what)
    const server = createServer({ allowHalfOpen: true, noDelay: true }, socket => {
      this.ingress.track(socket)
      socket.on('error', () => {})
      this.onConnection(socket)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.requestedPort, this.host, () => { server.off('error', reject); resolve() })
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
