/**
 * On the public network a node dials no private address (loopback, LAN,
 * link-local, CGNAT, ...) but the addresses it was given: its bootstrap
 * peers' and those of the relays it names in `listen`.
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
 * So the node looks names up itself before it dials (DnsNameResolver: the
 * system's resolver, /etc/hosts included, as net.connect would have), and
 * the connection gater sees the addresses the lookup gave, and refuses the
 * private ones (privateDialGater). What is let through is a given address
 * itself, its peer and its IP together (or the IPs its name had when it
 * was looked up), never a given peer's id alone: any DHT peer can add an
 * address under any peer id to this node's peer store, and bootstrap ids
 * are public. In a local testnet private addresses are the point, and
 * nothing is refused.
 */

import { lookup } from 'node:dns/promises'
import { isPrivate } from '@libp2p/utils'
import ipaddr from 'ipaddr.js'
import { multiaddr } from '@multiformats/multiaddr'
import { raceAbort } from '../race-abort.ts'
import { minute, second } from '../constants.ts'
import type { ConnectionGater, MultiaddrResolver } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const NAMES = new Map<string, 0 | 4 | 6>([['dns', 0], ['dns4', 4], ['dns6', 6]])

/**
 * Left to their transports: an address that names its host for TLS (its
 * SNI) would lose the name here. No transport of the node dials them.
 */
const KEEPS_ITS_NAME = new Set(['tls', 'sni', 'ws', 'wss'])

/**
 * How long one lookup may take before it counts as no answer. libp2p looks
 * up every address of a peer before it dials any, within the dial's 10 s:
 * one name whose DNS server stalls must not cost the peer's other
 * addresses their turn (the TCP transport gave each address 6 s).
 */
export const LOOKUP_TIMEOUT_MS = 3 * second
/** How long an answer is reused: kad-dht asks whether each peer of a query is dialable, and the dial asks again. */
export const LOOKUP_CACHE_MS = minute
const LOOKUP_CACHE_SIZE = 1024

/** The addresses a host name has, as net.connect would find them. */
export type LookupAll = (host: string, family: 0 | 4 | 6) => Promise<Array<{ address: string, family: number }>>

const systemLookup: LookupAll = async (host, family) => lookup(host, { all: true, family })

/** An IP as multiaddrs write it, for comparing. */
function ipKey (family: 'ip4' | 'ip6', address: string): string {
  return `${family}/${address.toLowerCase()}`
}

/**
 * The addresses the node was given: (peer, IP) pairs that may be private.
 * A given address with a DNS name adds the IPs the name has when the
 * resolver looks it up (`resolved`).
 */
export class GivenAddresses {
  /** By peer id: the IPs of its given addresses. */
  private readonly ips = new Map<string, Set<string>>()
  /** By host name: the peers given at that name. */
  private readonly names = new Map<string, Set<string>>()

  /** `given`: multiaddrs ending in `/p2p/<peer id>`; others are ignored. */
  constructor (given: readonly string[]) {
    for (const text of given) {
      let ma: Multiaddr
      try {
        ma = multiaddr(text)
      } catch {
        continue
      }
      const components = ma.getComponents()
      const peer = components.findLast(c => c.name === 'p2p')?.value
      const first = components[0]
      if (peer == null || first?.value == null) continue
      if (first.name === 'ip4' || first.name === 'ip6') this.add(peer, ipKey(first.name, first.value))
      else if (NAMES.has(first.name)) {
        const host = first.value.toLowerCase()
        const peers = this.names.get(host) ?? new Set()
        peers.add(peer)
        this.names.set(host, peers)
      }
    }
  }

  /** The resolver looked `host` up: its addresses are given for the peers given at that name. */
  resolved (host: string, addresses: Array<{ address: string, family: number }>): void {
    for (const peer of this.names.get(host.toLowerCase()) ?? []) {
      for (const a of addresses) this.add(peer, ipKey(a.family === 6 ? 'ip6' : 'ip4', a.address))
    }
  }

  /** Whether `ma` starts with a given peer's given IP: the peer it goes to first (a circuit's relay) and that IP. */
  has (ma: Multiaddr): boolean {
    const components = ma.getComponents()
    const first = components[0]
    const peer = components.find(c => c.name === 'p2p')?.value
    if (peer == null || first?.value == null || (first.name !== 'ip4' && first.name !== 'ip6')) return false
    return this.ips.get(peer)?.has(ipKey(first.name, first.value)) === true
  }

  private add (peer: string, ip: string): void {
    const ips = this.ips.get(peer) ?? new Set()
    ips.add(ip)
    this.ips.set(peer, ips)
  }
}

/**
 * A libp2p resolver for addresses that start with a DNS name: one address
 * per IP the name has, the rest of the address kept. A name that does not
 * resolve, or not within LOOKUP_TIMEOUT_MS, gives none (the dial goes on
 * with the peer's other addresses). Answers are kept for LOOKUP_CACHE_MS,
 * and one lookup serves every dial that asks meanwhile: an abandoned
 * lookup still holds a libuv thread until the system's resolver gives up.
 */
export class DnsNameResolver implements MultiaddrResolver {
  private readonly cache = new Map<string, { at: number, answer: Promise<Array<{ address: string, family: number }>> }>()

  constructor (private readonly init: { lookup?: LookupAll, given?: GivenAddresses, timeoutMs?: number, now?: () => number } = {}) {}

  canResolve (ma: Multiaddr): boolean {
    const components = ma.getComponents()
    return NAMES.has(components[0]?.name) && !components.some(c => KEEPS_ITS_NAME.has(c.name))
  }

  async resolve (ma: Multiaddr, options?: { signal?: AbortSignal }): Promise<Multiaddr[]> {
    const [first] = ma.getComponents()
    const host = first.value ?? ''
    let found: Array<{ address: string, family: number }>
    try {
      found = await raceAbort(this.lookup(host, NAMES.get(first.name) ?? 0), options?.signal)
    } catch (err) {
      if (options?.signal?.aborted === true) throw err
      return []
    }
    this.init.given?.resolved(host, found)
    const rest = ma.toString().slice(`/${first.name}/${host}`.length)
    return found.flatMap(a => {
      try {
        return [multiaddr(`/${a.family === 6 ? 'ip6' : 'ip4'}/${a.address}${rest}`)]
      } catch {
        return []
      }
    })
  }

  private async lookup (host: string, family: 0 | 4 | 6): Promise<Array<{ address: string, family: number }>> {
    const now = (this.init.now ?? Date.now)()
    const key = `${family}/${host.toLowerCase()}`
    const held = this.cache.get(key)
    if (held != null && now - held.at < LOOKUP_CACHE_MS) return held.answer
    const timeoutMs = this.init.timeoutMs ?? LOOKUP_TIMEOUT_MS
    let timer: NodeJS.Timeout | undefined
    const answer = Promise.race([
      (this.init.lookup ?? systemLookup)(host, family),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`no answer for ${host} in ${timeoutMs} ms`)) }, timeoutMs) })
    ]).finally(() => clearTimeout(timer))
    // a failure is kept as long as an answer: a name that does not resolve is not asked again at every dial
    answer.catch(() => {})
    this.cache.delete(key)
    if (this.cache.size >= LOOKUP_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value!)
    this.cache.set(key, { at: now, answer })
    return answer
  }
}

/**
 * The gater's part of the rule: on the public network, a dial to a private
 * address is refused unless that address is a given one (see
 * GivenAddresses.has).
 */
export function privateDialGater (options: { publicOnly: boolean, given: GivenAddresses }): Pick<ConnectionGater, 'denyDialMultiaddr'> {
  if (!options.publicOnly) return {}
  return {
    denyDialMultiaddr: (ma: Multiaddr): boolean => (isPrivate(ma) || embedsPrivateIPv4(ma)) && !options.given.has(ma)
  }
}

/** NAT64 (64:ff9b::/96) and IPv4-mapped addresses as a lookup writes them (`64:ff9b::a00:1`), which isPrivate reads as IPv6 only. */
function embedsPrivateIPv4 (ma: Multiaddr): boolean {
  const first = ma.getComponents()[0]
  if (first?.name !== 'ip6' || first.value == null) return false
  try {
    const ip = ipaddr.IPv6.parse(first.value)
    const embedded = ip.isIPv4MappedAddress() ? ip.toIPv4Address() : ip.range() === 'rfc6052' ? ipaddr.IPv4.parse(ip.toByteArray().slice(12).join('.')) : undefined
    return embedded != null && embedded.range() !== 'unicast'
  } catch {
    return false
  }
}
