/**
 * The exit side of routing: provide the region keys and put a signed
 * capacity ad in the DHT, keep them fresh, and say goodbye on stop.
 *
 * kad-dht neither republishes `put` records (they expire 48 h after they
 * are received) nor validates them locally, so the advertiser re-puts on a
 * timer, signs only checked fields (signCapacityAd validates first), and
 * retries with backoff until DHT servers take the ad.
 *
 * kad-dht's put and provide end without an error when no server took the
 * record (the closest peers it found were none), and libp2p's content
 * routing drops the answers: an exit at home whose only DHT server had just
 * restarted took its ad for published, and tried again 3 h later, while no
 * consumer could find it (a namespace walkthrough). So the advertiser uses
 * the DHT's own put and provide and counts the servers that answered: none
 * is a failure, retried, unless this node is a DHT server itself, which
 * answers lookups from its own store (and then it tries again soon, to
 * spread the ad once other servers come).
 */

import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { DEFAULT_AD_LIFETIME } from './constants.ts'
import { capacityKey, encodeCapacityAd, regionCidsFor, signCapacityAd } from './capacity-ad.ts'
import { adAddresses } from './ad-addresses.ts'
import { minute, second } from '../constants.ts'
import type { AbortOptions, ComponentLogger, Libp2p, Logger, PrivateKey, TypedEventTarget } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
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
  /**
   * The last seq signed, kept across restarts. An ad's seq is its signing
   * time, but never at or below the last one: an exit whose clock ran ahead
   * and was put right, then restarted, signed seqs below its old ad's, and
   * every lookup that met the old ad put it back (kad-dht's correction),
   * with the old addresses, until it expired.
   */
  seqStore?: { load: () => bigint | undefined, save: (seq: bigint) => void }
  now?: () => number
}

/** kad-dht's events, as far as the advertiser reads them: a server answered a message of this type. */
export interface DhtEvent {
  name: string
  messageType?: unknown
}

/** What of kad-dht the advertiser uses. */
export interface AdvertiserDht {
  put: (key: Uint8Array, value: Uint8Array, options?: AbortOptions) => AsyncIterable<DhtEvent>
  provide: (key: CID, options?: AbortOptions) => AsyncIterable<DhtEvent>
  getMode: () => 'client' | 'server'
}

export interface AdvertiserComponents {
  libp2p: Pick<Libp2p, 'getMultiaddrs' | 'addEventListener' | 'removeEventListener' | 'getPeers'>
  dht: AdvertiserDht
  /** kad-dht's routing table: a publication that failed is tried again when it gains a peer. */
  routingTable?: Pick<TypedEventTarget<{ 'peer:add': CustomEvent<unknown> }>, 'addEventListener' | 'removeEventListener'>
  privateKey: PrivateKey
  logger: ComponentLogger
}

export interface AdvertiserStatus {
  published: boolean
  lastPublishedAt?: number
  lastSeq?: string
  /** DHT servers that took the last ad (its put); 0 with published only when this node, a DHT server itself, holds it alone. */
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
  private publishing?: Promise<number | undefined>
  /** Something asked for a publication while one was under way: it runs again as soon as that one ends. */
  private again = false
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

  /** A DHT peer came: a publication that reached no server (or no peer) is tried again now, not after its backoff (up to 2 min). */
  private readonly onTablePeer = (): void => {
    if (this.state.lastError != null) this.schedule(0)
  }

  constructor (private readonly components: AdvertiserComponents, private readonly init: AdvertiserInit) {
    this.log = components.logger.forComponent('spareband:routing:advertiser')
    this.now = init.now ?? Date.now
    try {
      this.lastSeq = init.seqStore?.load() ?? 0n
    } catch (err) {
      this.log.error('could not read the last seq signed; ads start from the clock - %e', err)
    }
  }

  get lifetime (): number {
    return this.init.lifetimeMs ?? DEFAULT_AD_LIFETIME
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.components.libp2p.addEventListener('self:peer:update', this.onAddressChange)
    this.components.routingTable?.addEventListener('peer:add', this.onTablePeer)
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
    this.components.routingTable?.removeEventListener('peer:add', this.onTablePeer)
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
    // the address change or pause that asked for this must not wait for the next republish, 3 h on
    if (this.publishing != null) {
      this.again = true
      return
    }
    this.again = false
    const abort = new AbortController()
    this.publishAbort = abort
    this.state.publishingStartedAt = this.now()
    this.publishing = this.publish({ signal: AbortSignal.any([abort.signal, AbortSignal.timeout(30 * second)]) })
    try {
      const reached = await this.publishing
      if (this.again) {
        this.schedule(0)
      } else if (reached === undefined) {
        // nothing to offer (no region yet): looked at again at the republish
        this.schedule(this.lifetime / 2)
      } else if (reached === 0) {
        // a DHT server that holds its ad alone: again soon, for servers that come
        this.schedule(this.retryDelay)
        this.retryDelay = Math.min(this.retryDelay * 2, MAX_RETRY)
      } else {
        this.retryDelay = MIN_RETRY
        // republish well before the ad expires
        this.schedule(this.lifetime / 2)
      }
    } catch (err: any) {
      if (abort.signal.aborted) return
      this.state.lastError = err.message
      this.log('publish failed, retrying in %d ms - %e', this.retryDelay, err)
      this.schedule(this.again ? 0 : this.retryDelay)
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

  /** Publishes the ad (and provides the region keys); how many DHT servers took it, undefined with nothing to offer. Throws when none did, unless this node is a server. */
  private async publish (options: AbortOptions & { goodbye?: boolean }): Promise<number | undefined> {
    const offer = this.init.offer()
    if (offer == null) return undefined
    if (this.components.libp2p.getPeers().length === 0) throw new Error('no peers to publish to yet')
    const now = this.now()
    // the signing time, past every seq signed before (seqStore)
    const seq = BigInt(now) > this.lastSeq ? BigInt(now) : this.lastSeq + 1n
    this.lastSeq = seq
    try {
      this.init.seqStore?.save(seq)
    } catch (err) {
      this.log.error('could not keep the seq signed - %e', err)
    }
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
    const { dht } = this.components
    const cids = options.goodbye === true ? [] : regionCidsFor(offer.region)
    // side by side: each stores its record here first, so one query that fails (a DHT with no peer
    // to ask waits out the signal) does not keep the other's record from a server's own store
    const [put, ...provides] = await Promise.allSettled([answered(dht.put(key, value, options), PUT_VALUE), ...cids.map(async cid => answered(dht.provide(cid, options), ADD_PROVIDER))])
    const reached = put.status === 'fulfilled' ? put.value : 0
    const provided = provides.map(r => r.status === 'fulfilled' ? r.value : 0)
    if (dht.getMode() !== 'server' && (reached === 0 || provided.some(n => n === 0))) {
      const failed = [put, ...provides].find(r => r.status === 'rejected')
      if (failed != null) throw failed.reason
      throw new Error(`the ad reached no DHT server (put taken by ${reached}, region keys by ${provided.join(', ') || 'none'}); this node is a DHT client and holds no record others ask for`)
    }
    // a DHT server holds both records itself, and answers lookups from them, whatever its queries did
    if (cids.length > 0) this.state.regionKeys = cids.map(String)
    this.lastLoad = offer.load
    this.lastAddresses = multiaddrs.map(String).join()
    this.state.published = true
    this.state.lastPublishedAt = now
    this.state.lastSeq = seq.toString()
    this.state.peersReached = reached
    this.state.lastError = undefined
    this.log('published %s ad for %s (seq %s) to %d DHT server(s)', options.goodbye === true ? 'goodbye' : 'capacity', offer.region, seq, reached)
    return reached
  }
}

// kad-dht's MessageType names, as its PEER_RESPONSE events carry them
const PUT_VALUE = 'PUT_VALUE'
const ADD_PROVIDER = 'ADD_PROVIDER'

/** Runs a kad-dht query to its end; how many peers answered a message of `messageType`. */
async function answered (events: AsyncIterable<DhtEvent>, messageType: string): Promise<number> {
  let n = 0
  for await (const e of events) if (e.name === 'PEER_RESPONSE' && e.messageType === messageType) n++
  return n
}
