/**
 * What this node keeps of other peers' addresses (the peer store's address
 * filter), whatever told it of them: identify, the DHT, an ad.
 *
 * On the public network, no private address of another peer. A peer at
 * home lists its LAN and loopback addresses in identify: a dial to an exit
 * behind NAT tried its LAN address and its WebRTC ones on it, 6 s each,
 * before the circuit that works (libp2p dials one address at a time), and
 * its 127.0.0.1 reached this machine. At worst such an address is some
 * other device on this node's own network: a node in a data centre that
 * dials whatever private addresses peers name looks like a scan of the
 * provider's network, the complaint that made IPFS nodes filter them.
 * kad-dht's mapper and the ads' address rule (routing/ad-addresses.ts)
 * already leave them out; this closes identify, the one way in left. In a
 * local testnet private addresses are the point, and stay.
 *
 * Everywhere, no circuit of an exit through a relay its newest ad does not
 * name (routing/advertised-relays.ts): a relay it left.
 *
 * Addresses the node is given to dial (bootstrap peers, named relays) are
 * dialled as given; only what goes into the peer store is filtered.
 */

import { isPrivate } from '@libp2p/utils'
import type { AdvertisedRelays } from '../routing/advertised-relays.ts'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export function peerAddressFilter (self: PeerId, options: { publicOnly: boolean, advertisedRelays?: AdvertisedRelays }): (peer: PeerId, addr: Multiaddr) => boolean {
  return (peer, addr) => {
    // this node's own record keeps every address it listens on
    if (peer.equals(self)) return true
    if (options.publicOnly && isPrivate(addr)) return false
    return options.advertisedRelays?.accepts(peer, addr) ?? true
  }
}
