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

import { byteStream } from '@libp2p/utils'
import { isClosePending } from './tunnel-close-guard.ts'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import type { AbortOptions, Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'

export interface OpenStreamOptions extends AbortOptions {
  runOnLimitedConnection?: boolean
  maxOutboundStreams?: number
}

/** The connection a new stream to `peer` would use now, if any: never one whose close waits for its tunnels to end. */
export function connectionFor (libp2p: Pick<Libp2p, 'getConnections'>, peer: PeerId, allowLimited: boolean): Connection | undefined {
  const open = libp2p.getConnections(peer).filter(c => c.status === 'open' && !isClosePending(c))
  return open.find(c => c.limits == null) ?? (allowLimited ? open[0] : undefined)
}

export async function openStream (libp2p: Pick<Libp2p, 'getConnections' | 'dialProtocol'>, peer: PeerId, protocol: string, options: OpenStreamOptions = {}): Promise<Stream> {
  const connection = connectionFor(libp2p, peer, options.runOnLimitedConnection === true)
  if (connection != null) return connection.newStream(protocol, options)
  return libp2p.dialProtocol(peer, protocol, options)
}

/** libp2p's ping protocol, as its ping service and connection monitor speak it. */
export const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_BYTES = 32

/**
 * One ping on `connection` itself, relayed (limited) or not: resolves once
 * the peer echoed it, rejects when it did not before `options.signal`.
 * libp2p's ping service would look for a connection of its own, and skips
 * limited ones: to an exit behind a relay it dialled again.
 */
export async function pingOver (connection: Connection, options: AbortOptions): Promise<void> {
  let stream: Stream | undefined
  try {
    stream = await connection.newStream(PING_PROTOCOL, { ...options, runOnLimitedConnection: true })
  } catch (err: any) {
    // it answered the negotiation, only not for ping: it is there
    if (err.name === 'UnsupportedProtocolError') return
    throw err
  }
  try {
    const bytes = byteStream(stream)
    const sent = crypto.getRandomValues(new Uint8Array(PING_BYTES))
    const [, echoed] = await Promise.all([bytes.write(sent, options), bytes.read({ bytes: PING_BYTES, ...options })])
    if (!uint8ArrayEquals(echoed.subarray(), sent)) throw new Error('the ping came back altered')
    await stream.close(options).catch(() => {})
  } catch (err: any) {
    stream.abort(err)
    throw err
  }
}
