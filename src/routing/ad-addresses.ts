/**
 * Which of an exit's addresses go in its capacity ad, and which of an ad's
 * addresses a consumer dials. Both ends apply the same rule.
 *
 * On the public network, only addresses others can reach: no loopback,
 * private, link-local or reserved address (libp2p's isPrivate, as the DHT's
 * own address filter; a circuit address counts by its relay's address).
 * Exits put every listener in their ads, and consumers dialled their
 * 127.0.0.1 (reaching themselves), their LAN addresses (ENETUNREACH) and
 * waited out dials that could never work; and an ad is the exit's to write,
 * so a consumer must not dial whatever address it names. A DNS name is
 * taken as the DHT takes it: it is checked when it is dialled, by the
 * addresses it has then (node/private-dials.ts).
 * Addresses no other machine can dial (/unix, /memory) never go in.
 *
 * In a local testnet private addresses are the point, but loopback ones
 * are only of use on one machine: left out when there are others.
 */

import { isPrivate, tryGetNetConfig } from '@libp2p/utils'
import { isLoopback } from '../relay/listen-address.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

/** An address through a relay: its IP is the relay's. */
export function isCircuit (addr: Multiaddr): boolean {
  return addr.getComponents().some(c => c.name === 'p2p-circuit')
}

export function adAddresses (addresses: readonly Multiaddr[], localTestnet: boolean): Multiaddr[] {
  // an IP address or a DNS name first: another machine can dial it at all (not /unix, /memory)
  const network = addresses.filter(a => tryGetNetConfig(a) != null)
  if (!localTestnet) return network.filter(a => !isPrivate(a))
  const others = network.filter(a => !isLoopback(tryGetNetConfig(a)?.host ?? ''))
  return others.length > 0 ? others : network
}
