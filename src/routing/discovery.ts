/**
 * The consumer side of routing: find the exits of a region through the DHT
 * (providers of the region key), fetch and verify each one's capacity ad,
 * and cache them until they expire. Concurrent requests for one region share
 * one lookup; a fresh cache answers at once while a refresh runs behind it.
 */

import { capacityKey, decodeCapacityAd, regionCid, verifyCapacityAd } from './capacity-ad.ts'
import { normalizeRegion, regionMatches } from './regions.ts'
import { second } from '../constants.ts'
import { adAddresses, isCircuit } from './ad-addresses.ts'
import type { VerifiedCapacityAd } from './capacity-ad.ts'
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
}

interface RegionEntry { fetchedAt: number, peers: Set<string> }

/** How long a region's DHT lookup may take before it answers with what it found. */
export const DEFAULT_QUERY_TIMEOUT_MS = 15 * second
/** One exit's ad is fetched again (refetch()) at most this often: a burst of failed dials asks the DHT once. */
export const AD_REFETCH_INTERVAL_MS = 5 * second
/** Exits whose last refetch is remembered for that; the one asked longest ago is forgotten first. */
const MAX_REFETCHED = 1024

export class ExitDiscovery {
  private readonly log: Logger
  private readonly ads = new Map<string, VerifiedCapacityAd>()
  private readonly regions = new Map<string, RegionEntry>()
  private readonly inflight = new Map<string, Promise<VerifiedCapacityAd[]>>()
  /** When each exit's ad was last fetched again by refetch(). */
  private readonly refetched = new Map<string, number>()
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
   * Fetches `peer`'s ad again in the background, unless that was asked
   * within AD_REFETCH_INTERVAL_MS: its addresses may have changed (a new
   * relay) since the region's lookup. Within the query timeout, and ended by
   * stop().
   */
  refetch (peer: PeerId): void {
    const id = peer.toString()
    const now = this.now()
    if (now - (this.refetched.get(id) ?? -Infinity) < AD_REFETCH_INTERVAL_MS) return
    // re-inserted: the map's order is the order of asking, oldest first
    this.refetched.delete(id)
    this.refetched.set(id, now)
    if (this.refetched.size > MAX_REFETCHED) this.refetched.delete(this.refetched.keys().next().value!)
    const signal = AbortSignal.any([AbortSignal.timeout(this.init.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS), this.stopping.signal])
    this.fetchAd(peer, { signal }).catch(err => { this.log('could not fetch the ad of %p again - %e', peer, err) })
  }

  /**
   * Fetches, verifies and caches one exit's ad; its addresses go to the peer
   * store for dialing, and circuit addresses an ad newer than the one held
   * no longer names leave it (see dropMovedCircuits).
   */
  async fetchAd (peer: PeerId, options: AbortOptions = {}): Promise<VerifiedCapacityAd> {
    const bytes = await this.components.libp2p.contentRouting.get(capacityKey(peer), options)
    const ad = await verifyCapacityAd(decodeCapacityAd(bytes), { now: this.now() })
    if (!ad.peerId.equals(peer)) throw new Error('capacity ad of another peer')
    const prev = this.ads.get(peer.toString())
    if (prev == null || ad.seq >= prev.seq) this.ads.set(peer.toString(), ad)
    // only the addresses this network can reach: an ad is the exit's to write
    const dialable = adAddresses(ad.multiaddrs, this.init.localTestnet === true)
    if (prev != null && ad.seq > prev.seq) await this.dropMovedCircuits(peer, ad.multiaddrs)
    if (dialable.length > 0) await this.components.libp2p.peerStore.merge(peer, { multiaddrs: dialable }).catch(() => {})
    return this.ads.get(peer.toString())!
  }

  /**
   * The peer store only ever gains addresses: an exit that moved to another
   * relay (its old one died) kept its dead circuit there, and every dial to
   * it tried that first and waited out its 6 s (libp2p dials a peer's
   * addresses one at a time). So the circuits a newer ad than the one held
   * no longer names are dropped. Only on news: a circuit identify told of
   * since (the exit's newest reservation) is not undone by an ad fetched
   * again unchanged.
   */
  private async dropMovedCircuits (peer: PeerId, named: Multiaddr[]): Promise<void> {
    const { peerStore } = this.components.libp2p
    const bare = (a: Multiaddr): string => withoutPeer(a, peer)
    const keep = new Set(named.map(bare))
    try {
      const known = (await peerStore.get(peer)).addresses.map(a => a.multiaddr)
      const left = known.filter(a => !isCircuit(a) || keep.has(bare(a)))
      if (left.length === known.length) return
      this.log('%p moved: its newest ad no longer names %d circuit address(es), dropped', peer, known.length - left.length)
      await peerStore.patch(peer, { multiaddrs: left })
    } catch (err: any) {
      // a peer not in the store has nothing to drop
      if (err.name !== 'NotFoundError') this.log('could not drop the old circuits of %p - %e', peer, err)
    }
  }
}

/** `addr` as text without a trailing /p2p/<peer>: the store and the ad may write it either way. */
function withoutPeer (addr: Multiaddr, peer: PeerId): string {
  const text = addr.toString()
  const suffix = `/p2p/${peer.toString()}`
  return text.endsWith(suffix) ? text.slice(0, -suffix.length) : text
}
