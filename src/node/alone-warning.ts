/**
 * The warning for a node with no way into a network. js-libp2p finds peers
 * only through the bootstrap list (and, here, the named relays the peer
 * keeper dials): a node with neither, on a network spread over machines,
 * never meets anyone unless someone dials it, and nothing else would say so.
 */

import { namedRelays } from './libp2p.ts'
import type { SparebandConfig } from './config.ts'

/**
 * Why this node may stay alone, or undefined. Not on a local testnet: there
 * a node without bootstrap peers is the first one, the others' bootstrap
 * peer (`spareband testnet`, `--network local`). Not once a peer is
 * connected: the first node of a network, which the others name, is found.
 */
export function aloneWarning (config: Pick<SparebandConfig, 'network' | 'listen'>, peers: number): string | undefined {
  if (config.network.local_testnet) return undefined
  if (config.network.bootstrap.length > 0 || namedRelays(config.listen).length > 0) return undefined
  if (peers > 0) return undefined
  return `no bootstrap peer and no relay is configured for network "${config.network.name}", and no peer is connected: this node cannot find the network on its own and stays alone until a peer dials it; name a member with --bootstrap <multiaddr/p2p/peer-id> (network.bootstrap in config.toml, SPAREBAND_BOOTSTRAP), or use --network <name|file> whose definition lists bootstrap peers (--network local for a testnet on this machine)`
}
