/**
 * Who sent the DHT write being made, for the bounded DHT store
 * (dht-datastore.ts): a service runs kad-dht's stream handler inside an
 * AsyncLocalStorage whose store is the remote peer and the bucket its
 * writes count in (on the public network its IP address: peer ids are
 * free).
 */

import { AsyncLocalStorage } from 'node:async_hooks'
import ipaddr from 'ipaddr.js'
import type { Connection, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import type { Registrar } from '@libp2p/interface-internal'

/** Who sent a DHT write: the peer, and the bucket its writes are counted in (senderBucket). */
export interface DhtSender { peer: string, bucket: string }

/**
 * Who sent the DHT message being handled, for the datastore: dhtSenderTags()
 * runs kad-dht's stream handler inside `current`, and the handler's writes
 * (after its awaits too) see the remote peer. The node's own writes (its
 * ad, its provider entries) usually see none; a queue shared with a handler
 * can carry its context into them, which the store's own-entry rule
 * (BoundedDhtDatastoreInit.self) covers.
 */
export class DhtSenders {
  readonly current = new AsyncLocalStorage<DhtSender>()
}

/**
 * The bucket a connection's DHT writes count in. With `byAddress`: the
 * IPv4 address or IPv6 /64 it starts with, which for a relayed connection
 * is the relay's (kad-dht refuses limited connections, so only a relay
 * that sets no limits carries DHT writes, and any peer can be that relay:
 * libp2p takes a circuit's STOP from any connected peer, so a relay's
 * peer id would be a bucket per fresh id); with no address at all (WebRTC
 * set up through signalling, which any connected peer can do), one bucket
 * for all such connections. Else (a local testnet) its peer.
 */
export function senderBucket (connection: Pick<Connection, 'remoteAddr' | 'remotePeer'>, byAddress: boolean): string {
  const peer = connection.remotePeer.toString()
  if (!byAddress) return peer
  const components = connection.remoteAddr.getComponents()
  const ip = components[0]
  if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || ip.value == null) return 'no-address'
  try {
    // an IPv4-mapped IPv6 address is its IPv4 address
    const addr = ipaddr.process(ip.value)
    return addr.kind() === 'ipv4' ? `ip4/${addr.toString()}` : `ip6/${(addr as ipaddr.IPv6).toNormalizedString().split(':').slice(0, 4).join(':')}::/64`
  } catch {
    // not an address ipaddr.js reads: one bucket for all such, not a peer id (free to mint)
    return 'no-address'
  }
}

/**
 * A libp2p service that runs the handler registered for the DHT protocols
 * inside `senders.current`, with the remote peer and its bucket as the
 * store, so the datastore knows who sent each write. It wraps the
 * registrar's handle() before kad-dht registers (at start, or when it turns
 * server later). `byAddress`: count writes by IP address (senderBucket).
 */
export function dhtSenderTags (init: { protocols: string[], senders: DhtSenders, byAddress: boolean }): (components: { registrar: Registrar }) => object {
  return ({ registrar }) => {
    const handle = registrar.handle.bind(registrar)
    registrar.handle = async (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void> => {
      if (!init.protocols.includes(protocol)) return handle(protocol, handler, options)
      const tagged = (stream: Stream, connection: Connection): void | Promise<void> =>
        init.senders.current.run({ peer: connection.remotePeer.toString(), bucket: senderBucket(connection, init.byAddress) }, () => handler(stream, connection))
      return handle(protocol, tagged, options)
    }
    return {}
  }
}
