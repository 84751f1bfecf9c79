/**
 * The relays an exit's newest capacity ad names, as the truth about its
 * circuit addresses: one through a relay it no longer names is kept out of
 * the peer store, whoever brings it back.
 *
 * An exit whose relay died moves to another and says so in a newer ad. The
 * old circuit did not go away with it: the peer store only gains
 * addresses, and the DHT servers hand out the addresses they hold for a
 * provider (kept up to an hour) with every provider lookup, which libp2p
 * merges into the store. Every dial to the exit then tried the dead circuit
 * first (libp2p dials a peer's addresses one at a time, 6 s each, 10 s in
 * all): two such addresses failed the whole dial. So a circuit through a
 * relay the exit's newest ad does not name is refused (the peer store's
 * address filter asks accepts()), until a newer ad names that relay again
 * or the ad expires. Circuits are told apart by their relay's peer id, not
 * by their text: one relay has a TCP, a WebRTC, an IPv6 address.
 *
 * Direct addresses, and peers with no ad here (most peers: not exits), are
 * not this module's concern.
 */

import type { Multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'

/** Exits held at most; the one whose ad came longest ago is forgotten first. */
const MAX_EXITS = 10_000

interface Named {
  /** The relays its ad names. */
  readonly relays: Set<string>
  readonly expiresAt: number
  readonly seq: bigint
  /** The relays it named since in identify: these count in place of the ad's, until an ad with a higher seq. */
  identified?: Set<string>
}

export class AdvertisedRelays {
  private readonly byPeer = new Map<string, Named>()

  constructor (private readonly now: () => number = Date.now) {}

  /**
   * `peer`'s newest ad (`seq`) names these addresses, and holds until
   * `expiresAt` (ms since the epoch). The same ad fetched again keeps what
   * identify said since; a newer one replaces it.
   */
  set (peer: PeerId, addresses: readonly Multiaddr[], expiresAt: number, seq = 0n): void {
    const id = peer.toString()
    const relays = new Set(addresses.map(relayOf).filter((r): r is string => r != null))
    const before = this.byPeer.get(id)
    const identified = before != null && before.seq === seq ? before.identified : undefined
    // re-inserted: the map's order is the order of arrival, oldest first
    this.byPeer.delete(id)
    this.byPeer.set(id, { relays, expiresAt, seq, ...(identified != null ? { identified } : {}) })
    if (this.byPeer.size > MAX_EXITS) this.byPeer.delete(this.byPeer.keys().next().value!)
  }

  /**
   * `peer` itself told us its addresses (identify, over a connection it
   * authenticated): its relays are these from now on, until its ad expires.
   * An exit that reserved on another relay after we fetched its ad (its
   * second reservation, or one in place of a relay that died) named it
   * only in identify, and the filter kept that circuit out: the consumer
   * then dialled the dead relay's circuit alone. Fetching the same ad
   * again does not undo it; an ad with a higher seq does. Returns the
   * relays newly named, or undefined for a peer without an ad here (most
   * peers: not exits), which this does not concern.
   */
  identified (peer: PeerId, addresses: readonly Multiaddr[]): string[] | undefined {
    const named = this.byPeer.get(peer.toString())
    if (named == null || named.expiresAt <= this.now()) return undefined
    const relays = new Set(addresses.map(relayOf).filter((r): r is string => r != null))
    const before = named.identified ?? named.relays
    named.identified = relays
    return [...relays].filter(r => !before.has(r))
  }

  /** False for a circuit address of `peer` through a relay its newest, unexpired ad does not name. */
  accepts (peer: PeerId, addr: Multiaddr): boolean {
    const relay = relayOf(addr)
    if (relay == null) return true
    const named = this.byPeer.get(peer.toString())
    if (named == null) return true
    if (named.expiresAt <= this.now()) {
      this.byPeer.delete(peer.toString())
      return true
    }
    return (named.identified ?? named.relays).has(relay)
  }
}

/** The peer id an address ends in (its last /p2p/), unchecked; undefined when there is none. */
export function peerIdOf (addr: Multiaddr): string | undefined {
  return addr.getComponents().findLast(c => c.name === 'p2p')?.value
}

/** The relay's peer id in a circuit address (`.../p2p/<relay>/p2p-circuit...`); undefined for any other address. */
export function relayOf (addr: Multiaddr): string | undefined {
  const parts = addr.getComponents()
  const circuit = parts.findIndex(c => c.name === 'p2p-circuit')
  if (circuit < 1) return undefined
  const relay = parts[circuit - 1]
  return relay.name === 'p2p' ? relay.value : undefined
}
