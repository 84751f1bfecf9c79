/**
 * Connection.close() ends every stream on the connection gracefully: the
 * muxer closes each one's write side, and the far end reads that FIN as
 * the end of the tunnel's data. A download cut that way looks complete to
 * the client, an upload to the target.
 *
 * DCUtR does it: once a direct connection to a peer works, it closes the
 * relayed one, and that is right after the first tunnels to an exit behind
 * NAT opened on it. So every connection's close() is wrapped here. While
 * the node runs, a connection with live tunnels (relay/live-tunnels.ts) is
 * closed once they have ended, not at once: new streams already go to the
 * direct connection (open-stream.ts), and a relayed one is bounded by the
 * relay's own limits. A node that is stopping has ended its tunnels before
 * libp2p closes its connections; any left are reset, which both ends see
 * as an error rather than as an end.
 */

import { isLiveTunnel } from '../relay/live-tunnels.ts'
import type { AbortOptions, Connection, Logger, Stream } from '@libp2p/interface'

export function guardTunnelsOnClose (connection: Connection, running: () => boolean, log: Logger): void {
  const close = connection.close.bind(connection)
  connection.close = async (options?: AbortOptions): Promise<void> => {
    const tunnels = connection.streams.filter(isLiveTunnel)
    if (tunnels.length === 0) return close(options)
    if (!running()) {
      for (const s of tunnels) s.abort(new Error('the node is stopping'))
      return close(options)
    }
    log('closing connection to %a once its %d tunnel(s) end', connection.remoteAddr, tunnels.length)
    // the caller (DCUtR) goes on at once; the connection goes when its tunnels do
    void Promise.all(tunnels.map(untilClosed))
      .then(async () => { await close() })
      .catch(err => { log.error('closing connection to %a after its tunnels ended failed - %e', connection.remoteAddr, err) })
  }
}

async function untilClosed (stream: Stream): Promise<void> {
  if (stream.status !== 'open' && stream.status !== 'closing') return
  await new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
}
