/**
 * Region verification: does an exit sit in the country it claims?
 *
 * Consumers pay for traffic that leaves from a region, and a region claim
 * costs nothing to make, so selection weighs a claim by what the exit's
 * addresses say. The lookup is offline (`geoip-country` ships its
 * database), so checking never leaks to a third party which exits we look at.
 *
 * Only public, globally routed unicast addresses say anything: loopback,
 * private, link-local, CGNAT and the like are the same everywhere, and an
 * address the database does not know is no evidence either way. So:
 *
 * - `verified`: some public address geolocates to the claimed country;
 * - `mismatch`: public addresses geolocate, none to the claimed country;
 * - `unverifiable`: no public address with a known country (local
 *   testnets, exits behind NAT reached through relays).
 *
 * Subdivisions (`us-ca`) are checked at country level only; the database
 * has no finer resolution.
 *
 * Feed it the address the consumer actually connected to when there is one:
 * addresses from an ad are the exit's own claims and prove nothing unless
 * the exit was reached on them.
 */

import ipaddr from 'ipaddr.js'
import geoip from 'geoip-country'
import { multiaddr } from '@multiformats/multiaddr'
import { countryOf, isValidRegion } from './regions.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

export type RegionVerification = 'verified' | 'mismatch' | 'unverifiable'

/** Checks `claimedRegion` against the countries of `addresses` (IP literals). */
export function verifyRegion (claimedRegion: string, addresses: readonly string[]): RegionVerification {
  const countries = publicCountries(addresses)
  if (countries.size === 0) return 'unverifiable'
  // a claim that is no region can never be true
  if (!isValidRegion(claimedRegion)) return 'mismatch'
  return countries.has(countryOf(claimedRegion).toUpperCase()) ? 'verified' : 'mismatch'
}

/** The ISO country codes (upper case) of the public addresses the database knows. */
export function publicCountries (addresses: readonly string[]): Set<string> {
  const out = new Set<string>()
  for (const address of addresses) {
    const country = countryOfAddress(address)
    if (country != null) out.add(country)
  }
  return out
}

/** The country of one address, if it is public and the database knows it. */
export function countryOfAddress (address: string): string | undefined {
  const ip = publicAddress(address)
  if (ip == null) return undefined
  return geoip.lookup(ip)?.country ?? undefined
}

/** The address in canonical form if it is public unicast, else undefined. */
function publicAddress (address: string): string | undefined {
  if (!ipaddr.isValid(address)) return undefined
  let ip = ipaddr.parse(address)
  // ::ffff:a.b.c.d is the IPv4 address; judge that, not the mapping
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address()
  if (ip.range() !== 'unicast') return undefined
  return ip.toString()
}

/**
 * The IP addresses in `multiaddrs` (ip4 and ip6 components). Circuit
 * addresses are skipped: their IP is the relay's, not the exit's. DNS
 * names are skipped too: resolving them here would leak and could lie.
 * Unparsable strings are ignored, since these come from peers.
 */
export function addressesFromMultiaddrs (multiaddrs: ReadonlyArray<string | Multiaddr>): string[] {
  const out = new Set<string>()
  for (const input of multiaddrs) {
    let components
    try {
      components = multiaddr(input).getComponents()
    } catch {
      continue
    }
    if (components.some(c => c.name === 'p2p-circuit')) continue
    for (const c of components) {
      if ((c.name === 'ip4' || c.name === 'ip6') && c.value != null) out.add(c.value)
    }
  }
  return [...out]
}
