/**
 * A public IPv4 address on one of this machine's own interfaces, that the
 * node listens on, is taken as an address others can dial from the start.
 *
 * js-libp2p 3 lists a public address it listens on only once AutoNAT has
 * confirmed it (one peer's dial-back), and AutoNAT asks only once peers are
 * connected. Until then a node at a public address (a server, the
 * bootstrap peer of a new network) had no address in its peer record,
 * status or capacity ad, was a DHT client and ran no relay (a namespace
 * test: the relay's status listed no address).
 *
 * An IPv4 address on the machine's own interface that is public is, nearly
 * always, a machine on the Internet (behind a firewall, at worst, that the
 * operator opens for the port the node listens on). Each is confirmed
 * once: AutoNAT still checks it when its confirmation runs out, and its
 * verdict that peers cannot dial it (eight failed dial-backs) stands.
 * IPv6 is left to AutoNAT: a home machine has public IPv6 addresses that
 * its router's firewall keeps closed. An operator who knows better sets
 * `announce`, which libp2p takes as it is.
 */

import { networkInterfaces } from 'node:os'
import { isPrivate, isPrivateIp, tryGetNetConfig } from '@libp2p/utils'
import { isCircuit } from '../routing/ad-addresses.ts'
import type { Startable, TypedEventTarget, Libp2pEvents } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'

interface OwnAddressComponents {
  events: TypedEventTarget<Libp2pEvents>
  transportManager: { getAddrs: () => Multiaddr[] }
  addressManager: { confirmObservedAddr: (addr: Multiaddr, options?: { type?: 'transport' }) => void }
}

/** The addresses of `addrs` taken for dialable without AutoNAT: public IPv4, not through a relay. */
export function ownPublicIPv4 (addrs: readonly Multiaddr[]): Multiaddr[] {
  return addrs.filter(a => tryGetNetConfig(a)?.type === 'ip4' && !isPrivate(a) && !isCircuit(a))
}

/**
 * Whether the node will listen on a public IPv4 address of this machine's
 * own (a listen address naming one, or 0.0.0.0 with one on an interface),
 * or announces a public address: others can dial it, and it needs no
 * relay. Known before libp2p starts, from the config and the interfaces.
 */
export function listensPublicly (listen: readonly string[], announce: readonly string[], interfaces = networkInterfaces()): boolean {
  // a named relay's address is the relay's, and '/p2p-circuit' no address at all
  const own = (list: readonly string[]): Multiaddr[] => list.map(a => multiaddr(a)).filter(a => !isCircuit(a) && tryGetNetConfig(a) != null)
  // an announced name or public IP (libp2p's isPrivate takes a DNS name for public, as the DHT does)
  if (own(announce).some(a => !isPrivate(a))) return true
  const ips = own(listen).map(a => tryGetNetConfig(a)).flatMap(c => c?.type === 'ip4' ? [c.host] : [])
  // 0.0.0.0 is private to isPrivateIp: the wildcard counts by the interfaces
  if (ips.some(ip => isPrivateIp(ip) === false)) return true
  if (!ips.includes('0.0.0.0')) return false
  return Object.values(interfaces).flat().some(i => i != null && i.family === 'IPv4' && !i.internal && isPrivateIp(i.address) === false)
}

class OwnPublicAddresses implements Startable {
  /** Confirmed already: the relay transport's listener says 'listening' at every reservation and refresh, which must not undo AutoNAT's verdict. */
  private readonly confirmed = new Set<string>()

  constructor (private readonly components: OwnAddressComponents) {
    this.confirm = this.confirm.bind(this)
  }

  start (): void {
    this.components.events.addEventListener('transport:listening', this.confirm)
  }

  afterStart (): void {
    this.confirm()
  }

  stop (): void {
    this.components.events.removeEventListener('transport:listening', this.confirm)
  }

  /** Confirms each public address the first time it is listened on. */
  private confirm (): void {
    for (const addr of ownPublicIPv4(this.components.transportManager.getAddrs())) {
      const key = addr.toString()
      if (this.confirmed.has(key)) continue
      this.confirmed.add(key)
      this.components.addressManager.confirmObservedAddr(addr, { type: 'transport' })
    }
  }
}

export function ownPublicAddresses (): (components: OwnAddressComponents) => Startable {
  return components => new OwnPublicAddresses(components)
}
