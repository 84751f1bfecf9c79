/**
 * The warning for a node with no way into a network. js-libp2p finds peers
 * only through the bootstrap list (and, here, the named relays the peer
 * keeper dials): a node with neither, on a network spread over machines,
 * never meets anyone unless someone dials it, and nothing else would say so.
 */

import ipaddr from 'ipaddr.js'
import { namedRelays } from './libp2p.ts'
import type { SparebandConfig } from './config.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

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
  return `no bootstrap peer and no relay is configured for network "${config.network.name}", and no peer is connected: this node cannot find the network on its own and stays alone until a peer dials it; name a member with --bootstrap <multiaddr/p2p/peer-id> (network.bootstrap in config.toml, SPAREBAND_BOOTSTRAP), or use --network <name|file> whose definition lists bootstrap peers (--network local for a testnet on this machine or a LAN)`
}

/** How long a node may be connected with no DHT peer before it is warned: the routing table fills within seconds of a connection. */
export const NO_DHT_PEER_GRACE_MS = 30_000

/**
 * Why this node has peers but no DHT peer, or undefined. Outside a local
 * testnet the DHT takes peers at public addresses only (as on the
 * Internet: a LAN address names another machine for every peer), so
 * machines that meet at private addresses connect, and then nothing works:
 * no exit is found (NO_EXIT), none is advertised, and status said only
 * "connections 1".
 */
export function noDhtPeerWarning (config: Pick<SparebandConfig, 'network' | 'exit'>, state: { peers: number, routingTableSize: number, connectedMs: number, remoteAddrs: Multiaddr[], dhtServer?: boolean }): string | undefined {
  if (config.network.local_testnet) return undefined
  // a DHT server whose peers are all clients (a young network's bootstrap, its exits at home) is their DHT:
  // they put their records to it, and it answers lookups from them
  if (state.dhtServer === true) return undefined
  if (state.peers === 0 || state.routingTableSize > 0 || state.connectedMs < NO_DHT_PEER_GRACE_MS) return undefined
  // the name, before the first ': ', stays the same while the counts change: the start log shows the warning once
  const lead = `no DHT peer: connected to ${state.peers} peer(s), but none is in the DHT's routing table after ${Math.round(state.connectedMs / 1000)} s connected, so this node finds no exit beyond the peers it is connected to (NO_EXIT for the rest)${config.exit.enabled ? ' and cannot advertise its own' : ''}`
  const ips = state.remoteAddrs.map(ipOf)
  if (ips.length > 0 && ips.every(ip => ip != null && ip.range() !== 'unicast')) {
    return `${lead}: network "${config.network.name}" takes DHT peers at public addresses only, and every peer is at a private or loopback address (${[...new Set(ips.map(String))].slice(0, 3).join(', ')}); for machines that meet on a LAN or other private addresses, use --network local, or a network definition (--network FILE) with "local_testnet": true`
  }
  return `${lead}: its peers may not run the DHT as servers (network.dht_server; "auto", the default, is a server only at a public address), or reach it only at private addresses, which network "${config.network.name}" does not take`
}

/** The IP address a connection's remote address starts with, if it has one (a relayed connection's does not). */
function ipOf (addr: Multiaddr): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  const first = addr.getComponents()[0]
  if (first == null || (first.name !== 'ip4' && first.name !== 'ip6') || first.value == null) return undefined
  try {
    return ipaddr.process(first.value)
  } catch {
    return undefined
  }
}

/**
 * Why this node's exit cannot be used, or undefined: it listens on nothing
 * and announces nothing (`listen = []`, an empty SPAREBAND_LISTEN), so no
 * peer can open a tunnel to it, while it still advertises capacity. A node
 * that only uses exits may do so; one that supplies is told.
 */
export function unreachableExitWarning (config: Pick<SparebandConfig, 'exit' | 'listen' | 'announce'>): string | undefined {
  if (!config.exit.enabled || config.listen.length > 0 || config.announce.length > 0) return undefined
  return 'the exit is on, but this node listens on nothing and announces nothing (listen is empty), so no peer can open a tunnel to it; give it a listen address (the default is /ip4/0.0.0.0/tcp/4001 and the others in the README), a relay to be reached through (<relay multiaddr>/p2p-circuit), or run it with --no-supply'
}
