/**
 * A node that others could dial when it started does not search for relays
 * (libp2p.ts: its search would take reservation slots that exits behind NAT
 * need). But a node can stop being dialable while it runs: a laptop moved
 * from a public network to one behind NAT, a public address replaced by a
 * private one, or AutoNAT's verdict that peers cannot dial the public IPv4
 * on its interface (a firewall that keeps the port closed). Such a node
 * then had no address anyone could reach, and never looked for a relay: an
 * exit nobody could use, a DHT client for good.
 *
 * So while the node has no public address (kad-dht's and the relay
 * service's test, public-relay-server.ts), for SEARCH_AFTER_MS on end, it
 * starts the search it would have run from the start had it begun that way
 * (listens on `/p2p-circuit`, once per relay to reserve on). The wait keeps a passing gap (an address
 * changing, the first moments after start) from taking relay slots. Once
 * started the search goes on: libp2p's relay transport has no way to stop
 * one short of closing its listener, and a reservation costs the relay
 * little; the node's direct address is still advertised and dialled first
 * when it comes back.
 */

import { multiaddr } from '@multiformats/multiaddr'
import { hasPublicAddress } from './public-relay-server.ts'
import { second } from '../constants.ts'
import type { ComponentLogger, Libp2pEvents, Logger, PeerUpdate, Startable, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How long the node must be without a public address before it searches. */
export const SEARCH_AFTER_MS = 60 * second

/**
 * How often the addresses are looked at besides on 'self:peer:update': the
 * address a wildcard listener (0.0.0.0) has on an interface that went away
 * is gone from the node's addresses with no event to say so.
 */
export const LOOK_EVERY_MS = 15 * second

export interface RelaySearchInit {
  /**
   * 'from start': the node searches already (behind NAT, a local testnet,
   * named relays); 'if not public': it would, with `/p2p-circuit` in
   * `listen`, but looked dialable at start; 'never': `listen` leaves
   * `/p2p-circuit` out, the operator's choice. Only 'if not public' acts.
   */
  mode: 'from start' | 'if not public' | 'never'
  /** Relays to reserve on once searching (network.relay_reservations). @default 1 */
  reservations?: number
  /** @default SEARCH_AFTER_MS */
  searchAfterMs?: number
  /** @default LOOK_EVERY_MS */
  lookEveryMs?: number
}

interface RelaySearchComponents {
  events: TypedEventTarget<Libp2pEvents>
  addressManager: { getAddresses: () => Multiaddr[] }
  transportManager: { listen: (addrs: Multiaddr[]) => Promise<void> }
  logger: ComponentLogger
}

/** What `status().relaySearch` says: whether the node searches for relays, and why. */
export interface RelaySearchStatus {
  searching: boolean
  /**
   * 'from start' (not dialable when it started, or it names relays),
   * 'public address' (not needed so far), 'public address lost' (searching
   * since `since`), 'not in listen' (the operator left `/p2p-circuit` out).
   */
  reason: 'from start' | 'public address' | 'public address lost' | 'not in listen'
  /** When the search started, for 'public address lost' (ISO 8601). */
  since?: string
}

export class RelaySearch implements Startable {
  private readonly log: Logger
  private readonly searchAfterMs: number
  private timer?: NodeJS.Timeout
  private look?: NodeJS.Timeout
  private running = false
  private startedAt?: number

  constructor (private readonly components: RelaySearchComponents, private readonly init: RelaySearchInit) {
    this.log = components.logger.forComponent('spareband:relay-search')
    this.searchAfterMs = init.searchAfterMs ?? SEARCH_AFTER_MS
    this.onSelfUpdate = this.onSelfUpdate.bind(this)
  }

  start (): void {
    this.running = true
  }

  afterStart (): void {
    if (this.init.mode !== 'if not public') return
    this.watch()
    this.follow(this.components.addressManager.getAddresses())
  }

  stop (): void {
    this.running = false
    clearTimeout(this.timer)
    this.timer = undefined
    this.unwatch()
  }

  /** Follows the addresses: on every change libp2p says of, and now and then (LOOK_EVERY_MS). */
  private watch (): void {
    this.components.events.addEventListener('self:peer:update', this.onSelfUpdate)
    this.look = setInterval(() => { this.follow(this.components.addressManager.getAddresses()) }, this.init.lookEveryMs ?? LOOK_EVERY_MS)
    this.look.unref()
  }

  private unwatch (): void {
    this.components.events.removeEventListener('self:peer:update', this.onSelfUpdate)
    clearInterval(this.look)
    this.look = undefined
  }

  status (): RelaySearchStatus {
    if (this.init.mode === 'from start') return { searching: true, reason: 'from start' }
    if (this.init.mode === 'never') return { searching: false, reason: 'not in listen' }
    if (this.startedAt == null) return { searching: false, reason: 'public address' }
    return { searching: true, reason: 'public address lost', since: new Date(this.startedAt).toISOString() }
  }

  private onSelfUpdate (evt: CustomEvent<PeerUpdate>): void {
    this.follow(evt.detail.peer.addresses.map(a => a.multiaddr))
  }

  private follow (addrs: Multiaddr[]): void {
    if (this.startedAt != null || !this.running) return
    if (hasPublicAddress(addrs)) {
      clearTimeout(this.timer)
      this.timer = undefined
      return
    }
    if (this.timer != null) return
    this.timer = setTimeout(() => { this.timer = undefined; this.searchIfStillPrivate() }, this.searchAfterMs)
    this.timer.unref()
  }

  private searchIfStillPrivate (): void {
    if (!this.running || this.startedAt != null || hasPublicAddress(this.components.addressManager.getAddresses())) return
    this.startedAt = Date.now()
    this.unwatch()
    this.log('no public address for %d s: searching for a relay to be reached through', Math.round(this.searchAfterMs / 1000))
    this.components.transportManager.listen(searchListeners(this.init.reservations).map(a => multiaddr(a))).catch(err => {
      // not searching after all: the next address change tries again
      this.log.error('could not start the relay search - %e', err)
      this.startedAt = undefined
      if (this.running) this.watch()
    })
  }
}

/** The listen addresses that make libp2p's relay transport search for `reservations` relays (at least one). */
export function searchListeners (reservations = 1): string[] {
  return Array.from({ length: Math.max(1, reservations) }, () => '/p2p-circuit')
}

export function relaySearch (init: RelaySearchInit): (components: RelaySearchComponents) => RelaySearch {
  return components => new RelaySearch(components, init)
}
