/**
 * Connection.close() ends every stream on the connection gracefully: the
 * muxer closes each one's write side, and the far end reads that FIN as
 * the end of the tunnel's data. A download cut that way looks complete to
 * the client, an upload to the target.
 *
 * DCUtR does it: once a direct connection to a peer works, it closes the
 * relayed one, and that is right after the first tunnels to an exit behind
 * NAT opened on it. So every connection's close() is wrapped here. While
 * the node runs, a connection with live tunnels (relay/live-tunnels.ts:
 * requested or carrying) is closed once they have ended, not at once, and
 * meanwhile takes no new stream of ours (isClosePending: open-stream.ts,
 * the warm streams). A tunnel that opens on it all the same is waited for
 * too. A relayed connection waits as long as its tunnels last (the relay's
 * limits bound it; DCUtR gives its close 5 s); a direct one only until the
 * close's signal, if it has one (libp2p.hangUp(peer, { signal })), when
 * the tunnels left are reset. A node that is stopping has ended its
 * tunnels before libp2p closes its connections; any left are reset, which
 * both ends see as an error rather than as an end.
 */

import { isLiveTunnel } from '../relay/live-tunnels.ts'
import type { AbortOptions, Connection, Logger, Stream } from '@libp2p/interface'

const closePending = new WeakSet<Connection>()

/** Whether the connection's close waits for its tunnels: no new stream should go on it. */
export function isClosePending (connection: Connection | undefined): boolean {
  return connection != null && closePending.has(connection)
}

export function guardTunnelsOnClose (connection: Connection, running: () => boolean, log: Logger): void {
  const close = connection.close.bind(connection)
  const liveTunnels = (): Stream[] => connection.streams.filter(s => isLiveTunnel(s) && (s.status === 'open' || s.status === 'closing'))
  connection.close = async (options: AbortOptions = {}): Promise<void> => {
    if (liveTunnels().length === 0) return close(options)
    if (!running()) {
      for (const s of liveTunnels()) s.abort(new Error('the node is stopping'))
      return close(options)
    }
    if (closePending.has(connection)) return
    closePending.add(connection)
    log('closing connection to %a once its %d tunnel(s) end', connection.remoteAddr, liveTunnels().length)
    // a relayed connection's caller (DCUtR) goes on at once; the relay bounds how long its tunnels last
    const signal = connection.limits == null ? options.signal : undefined
    const closed = (async () => {
      for (let left = liveTunnels(); left.length > 0; left = liveTunnels()) {
        if (signal?.aborted === true) {
          for (const s of left) s.abort(signal.reason ?? new Error('the connection is closing'))
          break
        }
        await Promise.race([
          Promise.all(left.map(untilClosed)),
          ...(signal != null ? [new Promise(resolve => { signal.addEventListener('abort', resolve, { once: true }) })] : [])
        ])
      }
      await close()
    })()
    closed.catch(err => { log.error('closing connection to %a after its tunnels ended failed - %e', connection.remoteAddr, err) })
    if (signal != null) await closed.catch(() => {})
  }
}

async function untilClosed (stream: Stream): Promise<void> {
  if (stream.status !== 'open' && stream.status !== 'closing') return
  await new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }, { once: true }) })
}
