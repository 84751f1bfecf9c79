/**
 * On the public network a node dials no private address (loopback, LAN,
 * link-local, CGNAT, ...) but those of the peers it was given: its
 * bootstrap peers and the relays it names in `listen`.
 *
 * The peer store keeps no private address of another peer
 * (peer-address-filter.ts), but it keeps a DNS name as it came, and
 * libp2p hands `/dns4`, `/dns6` and `/dns` names to the TCP transport,
 * which looks them up as it connects. So an ad or an identify that named
 * `/dns4/router.lan/...`, or a public name its owner points at
 * 192.168.1.1, had every consumer that tried that exit dial into its own
 * network: a port scan of their LANs and home routers by whoever writes
 * the name, and from a data centre, a scan of the provider's network.
 *
 * So the node looks names up itself before it dials (dnsNameResolver: the
 * system's resolver, /etc/hosts included, as net.connect would have), and
 * the connection gater sees the addresses the lookup gave, and refuses the
 * private ones (privateDialGater). In a local testnet private addresses
 * are the point, and nothing is refused.
 */

import { lookup } from 'node:dns/promises'
import { isPrivate } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { raceAbort } from '../race-abort.ts'
import { withPeer } from './peer-keeper.ts'
import type { ConnectionGater, MultiaddrResolver } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const NAMES: Record<string, 0 | 4 | 6> = { dns: 0, dns4: 4, dns6: 6 }

/** The addresses a host name has, as net.connect would find them. */
export type LookupAll = (host: string, family: 0 | 4 | 6) => Promise<Array<{ address: string, family: number }>>

const systemLookup: LookupAll = async (host, family) => lookup(host, { all: true, family })

/**
 * A libp2p resolver for addresses that start with a DNS name: one address
 * per IP the name has, the rest of the address kept. A name that does not
 * resolve gives none (the dial goes on with the peer's other addresses).
 */
export function dnsNameResolver (lookupAll: LookupAll = systemLookup): MultiaddrResolver {
  return {
    canResolve: ma => NAMES[ma.getComponents()[0]?.name] != null,
    async resolve (ma, options) {
      const [first] = ma.getComponents()
      const host = first.value ?? ''
      let found: Array<{ address: string, family: number }>
      try {
        found = await raceAbort(lookupAll(host, NAMES[first.name]), options?.signal)
      } catch (err) {
        if (options?.signal?.aborted === true) throw err
        return []
      }
      const rest = ma.toString().slice(`/${first.name}/${host}`.length)
      return found.flatMap(a => {
        try {
          return [multiaddr(`/${a.family === 6 ? 'ip6' : 'ip4'}/${a.address}${rest}`)]
        } catch {
          return []
        }
      })
    }
  }
}

/**
 * The gater's part of the rule: on the public network, a dial to a private
 * address is refused unless it goes to (or through, for a circuit) a peer
 * the node was given. `given`: multiaddrs ending in `/p2p/<peer id>`.
 */
export function privateDialGater (options: { publicOnly: boolean, given: readonly string[] }): Pick<ConnectionGater, 'denyDialMultiaddr'> {
  if (!options.publicOnly) return {}
  const given = new Set(options.given.flatMap(a => withPeer(a)?.peer.toString() ?? []))
  return {
    denyDialMultiaddr: (ma: Multiaddr): boolean => {
      if (!isPrivate(ma)) return false
      // the peer the connection goes to first: a circuit's relay
      const first = ma.getComponents().find(c => c.name === 'p2p')?.value
      return first == null || !given.has(first)
    }
  }
}
