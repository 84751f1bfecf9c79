/**
 * On the public network this node keeps only public addresses of other
 * peers, whatever told it of them: identify (a peer at home lists its LAN
 * and loopback addresses), the DHT, an ad.
 *
 * A private address of another peer is, at best, unreachable from here: a
 * dial to an exit behind NAT tried its LAN address and its WebRTC ones on
 * it, 6 s each, before the circuit that works (libp2p dials one address at
 * a time), and its 127.0.0.1 reached this machine. At worst it is some
 * other device on this node's own network: a node in a data centre that
 * dials whatever private addresses peers name looks like a scan of the
 * provider's network, the complaint that made IPFS nodes filter them.
 * kad-dht's mapper and the ads' address rule (routing/ad-addresses.ts)
 * already leave them out; this closes identify, the one way in left.
 *
 * Addresses the node is given to dial (bootstrap peers, named relays) are
 * dialled as given; only what goes into the peer store is filtered. In a
 * local testnet private addresses are the point, and nothing is filtered.
 */

import { isPrivate } from '@libp2p/utils'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export function publicPeerAddresses (self: PeerId): (peer: PeerId, addr: Multiaddr) => boolean {
  // this node's own record keeps every address it listens on
  return (peer, addr) => peer.equals(self) || !isPrivate(addr)
}
