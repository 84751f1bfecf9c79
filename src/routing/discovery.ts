/**
 * The consumer side of routing: find the exits of a region through the DHT
 * (providers of the region key), fetch and verify each one's capacity ad,
 * and cache them until they expire. Concurrent requests for one region share
 * one lookup; a fresh cache answers at once while a refresh runs behind it.
 */

import { capacityKey, decodeCapacityAd, regionCid, verifyCapacityAd } from './capacity-ad.ts'
import { normalizeRegion, regionMatches } from './regions.ts'
import { second } from '../constants.ts'
import { adAddresses } from './ad-addresses.ts'
import type { VerifiedCapacityAd } from './capacity-ad.ts'
import { relayOf } from './advertised-relays.ts'
import type { AdvertisedRelays } from './advertised-relays.ts'
import type { AbortOptions, ComponentLogger, Libp2p, Logger, PeerId, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface ExitDiscoveryInit {
  /** How long a region's lookup result is fresh. @default 60 s */
  cacheTtlMs?: number
  /** Providers to look at per lookup. @default 40 */
  maxProviders?: number
  /** @default 15 s */
  queryTimeoutMs?: number
  /** A local testnet's ads may name private addresses to dial (see ad-addresses.ts). @default false */
  localTestnet?: boolean
  now?: () => number
}

export interface ExitDiscoveryComponents {
  libp2p: Pick<Libp2p, 'contentRouting' | 'peerStore' | 'peerId'>
  logger: ComponentLogger
  /** The DHT's routing table: a lookup waits for its first peer (kad-dht's RoutingTable). */
  routingTable?: { size: number } & Pick<TypedEventTarget<{ 'peer:add': CustomEvent<PeerId> }>, 'addEventListener' | 'removeEventListener'>
  /** Told the relays each exit's newest ad names; the peer store's address filter asks it (advertised-relays.ts). */
  advertisedRelays?: AdvertisedRelays
}

interface RegionEntry { fetchedAt: number, peers: Set<string> }

/** How long a region's DHT lookup may take before it answers with what it found. */
export const DEFAULT_QUERY_TIMEOUT_MS = 15 * second
/** One exit's ad is fetched again (refetch()) at most this often: a burst of failed dials asks the DHT once. */
export const AD_REFETCH_INTERVAL_MS = 5 * second
/**
 * Fetches that find an exit's ad unchanged before its interval starts to
 * double: an exit that moved to another relay republishes within a few
 * seconds of noticing, which takes it 25-30 s, so the first 20 s of asking
 * stay at the short interval.
 */
export const AD_REFETCH_UNCHANGED_BEFORE_BACKOFF = 4
/** Past those, an exit's interval doubles up to this while its ad stays the same: an exit that is down asks little of the DHT. */
export const AD_REFETCH_MAX_INTERVAL_MS = 2 * 60 * second
/** Refetches under way at once, over all exits: an outage that fails every exit does not flood the DHT. */
export const MAX_REFETCHES_AT_ONCE = 4
/** Exits whose last refetch is remembered for that; the one asked longest ago is forgotten first. */
const MAX_REFETCHED = 1024

interface Refetched { at: number, intervalMs: number, running: boolean, unchanged: number }

export class ExitDiscovery {
  private readonly log: Logger
  private readonly ads = new Map<string, VerifiedCapacityAd>()
  private readonly regions = new Map<string, RegionEntry>()
  private readonly inflight = new Map<string, Promise<VerifiedCapacityAd[]>>()
  /** Each exit's last refetch: when, how long until the next may run, whether it still runs. */
  private readonly refetched = new Map<string, Refetched>()
  private refetching = 0
  private readonly now: () => number
  /** Ends the lookups under way when the node stops: one waiting for the first peer would otherwise hold its callers for its whole timeout. */
  private stopping = new AbortController()

  constructor (private readonly components: ExitDiscoveryComponents, private readonly init: ExitDiscoveryInit = {}) {
    this.log = components.logger.forComponent('spareband:routing:discovery')
    this.now = init.now ?? Date.now
  }

  /** Lookups may run (again, after a stop: a node whose start failed may be started again). */
  start (): void {
    if (this.stopping.signal.aborted) this.stopping = new AbortController()
  }

  /** Ends the lookups under way (they answer with what they found); later ones end at once, until start(). */
  stop (): void {
    this.stopping.abort()
  }

  /** Every cached, unexpired ad that still offers capacity, optionally for one region. */
  cached (region?: string): VerifiedCapacityAd[] {
    const now = this.now()
    const out: VerifiedCapacityAd[] = []
    for (const [id, ad] of this.ads) {
      if (ad.expiresAt <= now) { this.ads.delete(id); continue }
      if (ad.capacityMbps <= 0) continue
      if (region != null && !regionMatches(ad.region, region)) continue
      out.push(ad)
    }
    return out
  }

  ad (peer: PeerId | string): VerifiedCapacityAd | undefined {
    return this.ads.get(peer.toString())
  }

  /**
   * The exits of `region`: from the cache when fresh, else from the DHT.
   * A DHT query only ends once it has walked the closest peers, which takes
   * seconds in a real network; with `enough`, the answer comes as soon as
   * that many ads are verified (or `maxWaitMs` passed with at least one), and
   * the query goes on filling the cache behind it.
   */
  async find (region: string, options: AbortOptions & { fresh?: boolean, enough?: number, maxWaitMs?: number, noWait?: boolean } = {}): Promise<VerifiedCapacityAd[]> {
    const r = normalizeRegion(region)
    const entry = this.regions.get(r)
    const age = entry == null ? Infinity : this.now() - entry.fetchedAt
    const ttl = this.init.cacheTtlMs ?? 60 * second
    if (options.fresh !== true && age < ttl && this.cached(r).length > 0) return this.cached(r)
    if (options.fresh !== true && age < 4 * ttl && this.cached(r).length > 0) {
      void this.lookup(r).catch(() => {}) // stale but usable: refresh behind the answer
      return this.cached(r)
    }
    const query = this.lookup(r, options)
    if (options.noWait === true) {
      // the caller has other candidates: answer from the cache, let the lookup fill it
      query.catch(() => {})
      return this.cached(r)
    }
    if (options.enough == null) return query
    query.catch(() => {})
    const started = this.now()
    let done = false
    void query.finally(() => { done = true })
    while (!done) {
      const have = this.cached(r).length
      if (have >= options.enough || (have > 0 && this.now() - started >= (options.maxWaitMs ?? 1000))) return this.cached(r)
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    return query
  }

  private async lookup (region: string, options: AbortOptions = {}): Promise<VerifiedCapacityAd[]> {
    const running = this.inflight.get(region)
    if (running != null) return running
    const p = this.query(region, options).finally(() => this.inflight.delete(region))
    this.inflight.set(region, p)
    return p
  }

  private async query (region: string, options: AbortOptions): Promise<VerifiedCapacityAd[]> {
    const signal = AbortSignal.any([AbortSignal.timeout(this.init.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS), this.stopping.signal, ...(options.signal != null ? [options.signal] : [])])
    const providers: PeerId[] = []
    const seen = new Set<string>()
    // each ad is fetched as soon as its provider turns up, so early answers can be used
    const fetches: Array<Promise<VerifiedCapacityAd | undefined>> = []
    // a lookup asks the routing table's peers: with none yet (the node just
    // started and its bootstrap peer is still being dialled) it would ask no
    // one and find nothing, so it waits for the first, within its timeout
    await this.firstPeer(signal)
    try {
      for await (const p of this.components.libp2p.contentRouting.findProviders(regionCid(region), { signal })) {
        const id = p.id.toString()
        if (seen.has(id) || p.id.equals(this.components.libp2p.peerId)) continue
        seen.add(id)
        providers.push(p.id)
        if (p.multiaddrs.length > 0) await this.components.libp2p.peerStore.merge(p.id, { multiaddrs: p.multiaddrs }).catch(() => {})
        fetches.push(this.fetchAd(p.id, { signal }).catch(err => {
          this.log('no valid capacity ad for %p - %e', p.id, err)
          return undefined
        }))
        if (providers.length >= (this.init.maxProviders ?? 40)) break
      }
    } catch (err: any) {
      if (providers.length === 0 && !signal.aborted) throw err
    }
    const found = await Promise.all(fetches)
    const ads = found.filter((a): a is VerifiedCapacityAd => a != null && regionMatches(a.region, region))
    this.regions.set(region, { fetchedAt: this.now(), peers: new Set(ads.map(a => a.peerId.toString())) })
    this.log('region %s: %d providers, %d valid ads', region, providers.length, ads.length)
    return ads.filter(a => a.capacityMbps > 0)
  }

  private async firstPeer (signal: AbortSignal): Promise<void> {
    const table = this.components.routingTable
    if (table == null || table.size > 0 || signal.aborted) return
    this.log('no peer in the routing table yet: waiting for one before the lookup')
    await new Promise<void>(resolve => {
      const done = (): void => {
        table.removeEventListener('peer:add', done)
        signal.removeEventListener('abort', done)
        resolve()
      }
      table.addEventListener('peer:add', done)
      signal.addEventListener('abort', done)
    })
  }

  /**
   * Fetches `peer`'s ad again in the background: its addresses may have
   * changed (a new relay) since the region's lookup. Not while one for it
   * runs, nor within its interval (AD_REFETCH_INTERVAL_MS, doubling while
   * the ad comes back unchanged), nor past MAX_REFETCHES_AT_ONCE in all.
   * Within the query timeout, and ended by stop().
   */
  refetch (peer: PeerId): void {
    const id = peer.toString()
    const now = this.now()
    const last = this.refetched.get(id)
    if (last != null && (last.running || now - last.at < last.intervalMs)) return
    if (this.refetching >= MAX_REFETCHES_AT_ONCE) return
    const held = this.ads.get(id)?.seq
    const entry: Refetched = { at: now, intervalMs: last?.intervalMs ?? AD_REFETCH_INTERVAL_MS, running: true, unchanged: last?.unchanged ?? 0 }
    // re-inserted: the map's order is the order of asking, oldest first
    this.refetched.delete(id)
    this.refetched.set(id, entry)
    if (this.refetched.size > MAX_REFETCHED) this.refetched.delete(this.refetched.keys().next().value!)
    this.refetching++
    const signal = AbortSignal.any([AbortSignal.timeout(this.init.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS), this.stopping.signal])
    // news resets the interval; the same ad again (the exit is down, or not moved yet), or none, lengthens it
    const unchanged = (): void => {
      entry.unchanged++
      if (entry.unchanged >= AD_REFETCH_UNCHANGED_BEFORE_BACKOFF) entry.intervalMs = Math.min(entry.intervalMs * 2, AD_REFETCH_MAX_INTERVAL_MS)
    }
    this.fetchAd(peer, { signal })
      .then(ad => {
        if (held == null || ad.seq > held) {
          entry.unchanged = 0
          entry.intervalMs = AD_REFETCH_INTERVAL_MS
        } else {
          unchanged()
        }
      }, err => {
        unchanged()
        this.log('could not fetch the ad of %p again - %e', peer, err)
      })
      .finally(() => {
        entry.running = false
        this.refetching--
      })
  }

  /**
   * Fetches, verifies and caches one exit's ad; its addresses go to the peer
   * store for dialing, and the circuits through relays the newest ad does
   * not name leave it (see dropUnnamedCircuits).
   */
  async fetchAd (peer: PeerId, options: AbortOptions = {}): Promise<VerifiedCapacityAd> {
    const bytes = await this.components.libp2p.contentRouting.get(capacityKey(peer), options)
    const ad = await verifyCapacityAd(decodeCapacityAd(bytes), { now: this.now() })
    if (!ad.peerId.equals(peer)) throw new Error('capacity ad of another peer')
    const prev = this.ads.get(peer.toString())
    const newest = prev == null || ad.seq >= prev.seq
    if (newest) {
      this.ads.set(peer.toString(), ad)
      this.components.advertisedRelays?.set(peer, ad.multiaddrs, ad.expiresAt, ad.seq)
      await this.dropUnnamedCircuits(peer)
    }
    // only the addresses this network can reach: an ad is the exit's to write
    const dialable = adAddresses(ad.multiaddrs, this.init.localTestnet === true)
    if (dialable.length > 0) await this.components.libp2p.peerStore.merge(peer, { multiaddrs: dialable }).catch(() => {})
    return this.ads.get(peer.toString())!
  }

  /**
   * An exit told us its addresses in identify: the circuits through relays
   * it named there are kept from now on (the peer store's filter had kept
   * out those its ad did not name), and those through relays it no longer
   * names leave the store.
   */
  async identified (peer: PeerId, addresses: readonly Multiaddr[]): Promise<void> {
    const relays = this.components.advertisedRelays
    if (relays == null) return
    const added = relays.identified(peer, addresses)
    // not an exit whose ad we hold: its addresses are the peer store's concern alone (no store read per identify)
    if (added == null) return
    const circuits = addresses.filter(a => { const r = relayOf(a); return r != null && added.includes(r) })
    const dialable = adAddresses(circuits, this.init.localTestnet === true)
    if (dialable.length > 0) await this.components.libp2p.peerStore.merge(peer, { multiaddrs: dialable }).catch(() => {})
    await this.dropUnnamedCircuits(peer)
  }

  /**
   * The circuits already in the peer store through relays the exit's newest
   * ad does not name: they leave it (the filter keeps them from coming back,
   * advertised-relays.ts). Kept addresses keep what the store knew of them.
   */
  private async dropUnnamedCircuits (peer: PeerId): Promise<void> {
    const relays = this.components.advertisedRelays
    if (relays == null) return
    const { peerStore } = this.components.libp2p
    try {
      const known = (await peerStore.get(peer)).addresses
      const kept = known.filter(a => relays.accepts(peer, a.multiaddr))
      if (kept.length === known.length) return
      this.log('%p moved: %d circuit address(es) through relays its newest ad does not name, dropped', peer, known.length - kept.length)
      await peerStore.patch(peer, { addresses: kept })
    } catch (err: any) {
      // a peer not in the store has nothing to drop
      if (err.name !== 'NotFoundError') this.log('could not drop the old circuits of %p - %e', peer, err)
    }
  }
}
