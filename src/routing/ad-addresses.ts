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
 * so a consumer must not dial whatever address it names.
 *
 * In a local testnet private addresses are the point, but loopback ones
 * are only of use on one machine: left out when there are others.
 */

import { isPrivate } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'

export function adAddresses (addresses: readonly Multiaddr[], localTestnet: boolean): Multiaddr[] {
  if (!localTestnet) return addresses.filter(a => !isPrivate(a))
  const others = addresses.filter(a => !isLoopback(a))
  return others.length > 0 ? others : [...addresses]
}

function isLoopback (a: Multiaddr): boolean {
  const [first] = a.getComponents()
  if (first?.name === 'ip4') return first.value?.startsWith('127.') === true
  if (first?.name === 'ip6') return first.value === '::1'
  return (first?.name === 'dns' || first?.name === 'dns4' || first?.name === 'dns6') && first.value === 'localhost'
}

