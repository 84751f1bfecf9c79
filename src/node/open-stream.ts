/**
 * Opens a protocol stream to a peer on a connection we already have: a
 * direct one first, else (when the caller allows it) a limited, relayed one;
 * only with no open connection at all does it dial.
 *
 * Why not `libp2p.dialProtocol(peerId)`: libp2p never reuses a limited
 * connection for it. To an exit reachable only through a relay, every
 * tunnel, warm stream and receipt stream would build a new circuit (a relay
 * hop, a noise handshake, identify) and leave the old one behind.
 */

import type { AbortOptions, Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'

export interface OpenStreamOptions extends AbortOptions {
  runOnLimitedConnection?: boolean
  maxOutboundStreams?: number
}

/** The connection a new stream to `peer` would use now, if any. */
export function connectionFor (libp2p: Pick<Libp2p, 'getConnections'>, peer: PeerId, allowLimited: boolean): Connection | undefined {
  const open = libp2p.getConnections(peer).filter(c => c.status === 'open')
  return open.find(c => c.limits == null) ?? (allowLimited ? open[0] : undefined)
}

export async function openStream (libp2p: Pick<Libp2p, 'getConnections' | 'dialProtocol'>, peer: PeerId, protocol: string, options: OpenStreamOptions = {}): Promise<Stream> {
  const connection = connectionFor(libp2p, peer, options.runOnLimitedConnection === true)
  if (connection != null) return connection.newStream(protocol, options)
  return libp2p.dialProtocol(peer, protocol, options)
}
