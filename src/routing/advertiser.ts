/**
 * The exit side of routing: provide the region keys and put a signed
 * capacity ad in the DHT, keep them fresh, and say goodbye on stop.
 *
 * kad-dht neither republishes `put` records (they expire 48 h after they
 * are received) nor validates them locally, so the advertiser re-puts on a
 * timer, signs only checked fields (signCapacityAd validates first), and
 * retries with backoff while the routing table is still empty.
 */

import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { DEFAULT_AD_LIFETIME } from './constants.ts'
import { capacityKey, encodeCapacityAd, regionCidsFor, signCapacityAd } from './capacity-ad.ts'
import { adAddresses } from './ad-addresses.ts'
import { minute, second } from '../constants.ts'
import type { AbortOptions, ComponentLogger, Libp2p, Logger, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** What the exit offers right now, read on every publish. */
export interface ExitOffer {
  region: string
  capacityMbps: number
  /** 0..1 */
  load: number
  pricePerGbMicro: bigint
  allowedPorts: string
}

export interface AdvertiserInit {
  offer: () => ExitOffer | undefined
  /** @default DEFAULT_AD_LIFETIME (6 h) */
  lifetimeMs?: number
  /** Re-publish when the load moved by more than this since the last ad. @default 0.2 */
  loadChange?: number
  /** A local testnet's ads keep private addresses (see ad-addresses.ts). @default false */
  localTestnet?: boolean
  now?: () => number
}

export interface AdvertiserComponents {
  libp2p: Pick<Libp2p, 'contentRouting' | 'getMultiaddrs' | 'addEventListener' | 'removeEventListener' | 'getPeers'>
  privateKey: PrivateKey
  logger: ComponentLogger
}

export interface AdvertiserStatus {
  published: boolean
  lastPublishedAt?: number
  lastSeq?: string
  peersReached: number
  regionKeys: string[]
  lastError?: string
  /** When the publication under way began (ms since the epoch); absent when none is. A DHT with no peer to take it makes one last its 30 s. */
  publishingStartedAt?: number
}

const MIN_RETRY = 1 * second
const MAX_RETRY = 2 * minute
const CHECK_INTERVAL = 30 * second

export class Advertiser {
  private readonly log: Logger
  private timer?: NodeJS.Timeout
  private checkTimer?: NodeJS.Timeout
  private retryDelay = MIN_RETRY
  private running = false
  private publishing?: Promise<void>
  /** Ends the publication under way: stop() does not wait out its 30 s (a node with no DHT peers to take it took that long to stop). */
  private publishAbort?: AbortController
  private lastLoad = 0
  private lastSeq = 0n
  private readonly state: AdvertiserStatus = { published: false, peersReached: 0, regionKeys: [] }
  private readonly now: () => number
  /** The addresses in the last ad published, to tell an address change from the other updates of self (protocols, autonat's checks). */
  private lastAddresses = ''
  private readonly onAddressChange = (): void => {
    // every self:peer:update cost a put and a provide per region key, though most change no address the ad names
    if (this.adAddresses().map(String).join() !== this.lastAddresses) this.schedule(0)
  }

  constructor (private readonly components: AdvertiserComponents, private readonly init: AdvertiserInit) {
    this.log = components.logger.forComponent('spareband:routing:advertiser')
    this.now = init.now ?? Date.now
  }

  get lifetime (): number {
    return this.init.lifetimeMs ?? DEFAULT_AD_LIFETIME
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.components.libp2p.addEventListener('self:peer:update', this.onAddressChange)
    this.checkTimer = setInterval(() => this.checkLoad(), CHECK_INTERVAL)
    this.checkTimer.unref()
    this.schedule(0)
  }

  /** Publishes a zero-capacity ad so consumers stop picking us, then stops. */
  async stop (options: AbortOptions = {}): Promise<void> {
    if (!this.running) return
    this.running = false
    clearTimeout(this.timer)
    clearInterval(this.checkTimer)
    this.components.libp2p.removeEventListener('self:peer:update', this.onAddressChange)
    this.publishAbort?.abort(new Error('the advertiser is stopping'))
    await this.publishing?.catch(() => {})
    if (this.state.published) {
      try {
        await this.publish({ goodbye: true, signal: options.signal ?? AbortSignal.timeout(3 * second) })
      } catch (err: any) {
        this.log('goodbye ad not published - %e', err)
      }
    }
  }

  status (): AdvertiserStatus {
    return { ...this.state }
  }

  /** The offer changed at once (the exit paused or resumed, an operator's rare act): publish now. */
  offerChanged (): void {
    this.schedule(0)
  }

  private checkLoad (): void {
    const offer = this.init.offer()
    if (offer != null && Math.abs(offer.load - this.lastLoad) > (this.init.loadChange ?? 0.2)) this.schedule(0)
  }

  private schedule (delay: number): void {
    if (!this.running) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => { void this.run() }, delay)
    this.timer.unref()
  }

  private async run (): Promise<void> {
    if (this.publishing != null) return this.schedule(MIN_RETRY)
    const abort = new AbortController()
    this.publishAbort = abort
    this.state.publishingStartedAt = this.now()
    this.publishing = this.publish({ signal: AbortSignal.any([abort.signal, AbortSignal.timeout(30 * second)]) })
    try {
      await this.publishing
      this.retryDelay = MIN_RETRY
      // republish well before the ad expires
      this.schedule(this.lifetime / 2)
    } catch (err: any) {
      if (abort.signal.aborted) return
      this.state.lastError = err.message
      this.log('publish failed, retrying in %d ms - %e', this.retryDelay, err)
      this.schedule(this.retryDelay)
      this.retryDelay = Math.min(this.retryDelay * 2, MAX_RETRY)
    } finally {
      this.publishing = undefined
      this.publishAbort = undefined
      this.state.publishingStartedAt = undefined
    }
  }

  private adAddresses (): Multiaddr[] {
    return adAddresses(this.components.libp2p.getMultiaddrs(), this.init.localTestnet === true).slice(0, 16)
  }

  private async publish (options: AbortOptions & { goodbye?: boolean }): Promise<void> {
    const offer = this.init.offer()
    if (offer == null) return
    if (this.components.libp2p.getPeers().length === 0) throw new Error('no peers to publish to yet')
    const now = this.now()
    // the signing time orders ads across restarts without stored state
    const seq = BigInt(now) > this.lastSeq ? BigInt(now) : this.lastSeq + 1n
    const multiaddrs = this.adAddresses()
    const ad = await signCapacityAd({
      region: offer.region,
      capacityMbps: options.goodbye === true ? 0 : offer.capacityMbps,
      load: options.goodbye === true ? 1 : offer.load,
      pricePerGbMicro: offer.pricePerGbMicro,
      allowedPorts: offer.allowedPorts,
      multiaddrs,
      seq,
      expiresAt: now + this.lifetime
    }, this.components.privateKey)
    const value = encodeCapacityAd(ad)
    const key = capacityKey(peerIdFromPrivateKey(this.components.privateKey))
    await this.components.libp2p.contentRouting.put(key, value, options)
    if (options.goodbye !== true) {
      const cids = regionCidsFor(offer.region)
      await Promise.all(cids.map(async cid => this.components.libp2p.contentRouting.provide(cid, options)))
      this.state.regionKeys = cids.map(String)
    }
    this.lastSeq = seq
    this.lastLoad = offer.load
    this.lastAddresses = multiaddrs.map(String).join()
    this.state.published = true
    this.state.lastPublishedAt = now
    this.state.lastSeq = seq.toString()
    this.state.peersReached = this.components.libp2p.getPeers().length
    this.state.lastError = undefined
    this.log('published %s ad for %s (seq %s)', options.goodbye === true ? 'goodbye' : 'capacity', offer.region, seq)
  }
}
