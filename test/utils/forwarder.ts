/**
 * A TCP forwarder on 127.0.0.1 to a port there, which can go silent as a
 * dead host or a cut line does: the connections stay up, nothing passes
 * either way, nothing is closed.
 */

import { createServer, connect } from 'node:net'
import type { AddressInfo, Server, Socket } from 'node:net'

export interface Forwarder {
  port: number
  /** From now on nothing passes, on the connections open and on new ones. */
  silence: () => void
  /** From now on new connections are refused (nothing listens), as at a host whose process died; those open stay, silent or not. */
  refuse: () => void
  close: () => Promise<void>
}

export async function forwarder (port: number): Promise<Forwarder> {
  const sockets: Socket[] = []
  let silent = false
  const server: Server = createServer(client => {
    const upstream = connect(port, '127.0.0.1')
    sockets.push(client, upstream)
    for (const s of [client, upstream]) s.on('error', () => {})
    client.on('data', d => { if (!silent) upstream.write(d) })
    upstream.on('data', d => { if (!silent) client.write(d) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    silence: () => { silent = true },
    refuse: () => { server.close() },
    close: async () => {
      for (const s of sockets) s.destroy()
      if (server.listening) await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}
