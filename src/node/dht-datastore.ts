/**
 * The node's libp2p datastore: in memory, as libp2p's default, but with the
 * DHT's records and provider entries bounded.
 *
 * kad-dht stores every valid record a peer puts, and every provider entry
 * it announces, with no limit per peer or in all. Keys are free, so a peer
 * can sign capacity ads under as many keys as it likes: a hostile-peer
 * review put 4,000 (about 3.8 KB each) into an exit without one refused.
 * Here, past a bound, an entry written long ago goes first: honest
 * records are put again on every re-publish (each ad every 3 h and on a
 * change, each provider entry at its re-provide), so they come back to the
 * front, while a flood pushes out its own older entries. The bounds are far above what an
 * honest network stores on one node: each record goes to the 20 peers
 * closest to its key, so a node holds about 20 x (exits / nodes) ads.
 *
 * A bound in all still lets one peer push honest entries out: more than
 * 10,000 records between two re-publishes from one connection, and the ads
 * this node holds are the flood's. So what one sender writes has a bound of its own
 * (DhtSenders, dht-senders.ts, tells the store who sent the message being handled): past
 * it, its own oldest entry goes, nobody else's. An honest peer writes its
 * own ad and provider entries, and corrects a few records after its
 * lookups (kad-dht puts the newest record it found to the peers that
 * answered with an older one): far below the bound. Peer ids are free (a
 * review put 40 fresh ones through one connection after another in 5 s),
 * so on the public network a sender is the IP address the write came from
 * (an IPv6 /64; a relayed connection's relay's), which a flooder cannot
 * mint (senderBucket: connections without an address share one bucket);
 * in a local testnet, where every node shares an address, it is the peer.
 * For room, the sender holding most gives way first, so a flood from many
 * addresses, each under its own bound, still pushes out its own.
 *
 * The peer store, which shares this datastore, is not bounded here.
 */

import { MemoryDatastore } from 'datastore-core/memory'
import { Key } from 'interface-datastore'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import type { DhtSender, DhtSenders } from './dht-senders.ts'
import type { AbortOptions } from '@libp2p/interface'

/** DHT records (capacity ads) kept at most: about 38 MB of ads. */
export const MAX_DHT_RECORDS = 10_000
/** Provider entries (an exit providing a region key) kept at most. */
export const MAX_DHT_PROVIDER_ENTRIES = 100_000
/** Records, and provider entries, one sender may hold here at most (each kind). */
export const MAX_DHT_ENTRIES_PER_SENDER = 256
/**
 * Providers of one key (a region) one sender may hold here at most. Every
 * exit of a region provides its key to the same 20 nodes, and consumers
 * take the first 40 providers they are given: without this, one address
 * with a few dozen fresh peer ids filled a region's list with exits that
 * are not there. Room for a few honest exits behind one address (an
 * office, a carrier's NAT).
 */
export const MAX_DHT_PROVIDERS_PER_SENDER_AND_KEY = 8

export interface BoundedDhtDatastoreInit {
  /** kad-dht's datastorePrefix. @default '/dht' */
  prefix?: string
  /** @default MAX_DHT_RECORDS */
  maxRecords?: number
  /** @default MAX_DHT_PROVIDER_ENTRIES */
  maxProviderEntries?: number
  /** @default MAX_DHT_ENTRIES_PER_SENDER */
  maxPerSender?: number
  /** @default MAX_DHT_PROVIDERS_PER_SENDER_AND_KEY */
  maxProvidersPerSenderAndKey?: number
  /** Who sent the write being made; without it no write has a sender, and only the bounds in all hold. */
  senders?: DhtSenders
  /** The peer that made a record, when its key says (a capacity ad's key names its exit): that peer's write makes the record its own again. */
  recordAuthor?: (recordKey: Uint8Array) => string | undefined
  /**
   * This node's peer id: its own ad and provider entries are its own
   * whatever context a write runs in (a queue shared with a handler can
   * carry a remote sender into the node's own work), never a sender's.
   */
  self?: string
  /**
   * Whether to keep the record held rather than the one being written
   * (both serialized libp2p records of one key), unless its author writes
   * it. kad-dht stores whatever valid record a peer puts, an older one over
   * a newer: replayed to the nodes that hold an exit's ad, an old ad (a
   * relay that is gone) or a live one over its goodbye stood until the
   * exit's next put.
   */
  keepHeld?: (incoming: Uint8Array, held: Uint8Array) => boolean
}

/**
 * Keys under one prefix, oldest write first, at most `max` of them, and at
 * most `maxPerSender` of one sender's bucket. A key is the bucket's that
 * first wrote it while it is held, the author's once the author writes it,
 * and the node's own (no bucket's) once the node writes it: a peer that
 * writes again a record held here (an honest correction, or a flooder that
 * fetched an honest ad to put it back) must not make it its own, or its
 * flood would push out the honest record with its own oldest.
 */
class BoundedKeys {
  /** Insertion-ordered: a key written again moves to the end. */
  readonly keys = new Set<string>()
  /** Each sender's keys (see above for which are whose), oldest write first. */
  private readonly bySender = new Map<string, Set<string>>()
  private readonly senderOf = new Map<string, string>()
  /** Each sender's keys of one group (the providers of one key), oldest write first, when the kind has groups. */
  private readonly bySenderGroup = new Map<string, Set<string>>()
  /** Senders by how many keys they hold (index: the count), to find the largest at once. */
  private readonly bySize: Array<Set<string>> = []
  private largest = 0
  /** Keys dropped for room since start. */
  evicted = 0
  /** Keys dropped since start because their sender wrote more than its bound. */
  evictedOverSenderBound = 0
  constructor (readonly prefix: string, readonly max: number, readonly maxPerSender: number, readonly group?: { of: (id: string) => string, max: number }) {}

  private groupKey (bucket: string, id: string): string | undefined {
    return this.group == null ? undefined : `${bucket}\n${this.group.of(id)}`
  }

  /** Notes a write of `id` by `sender` (undefined: the node's own) of a key made by `author`, if known; returns the keys to drop. */
  written (id: string, sender: DhtSender | undefined, author: string | undefined): string[] {
    const dropped: string[] = []
    if (this.keys.has(id) && sender != null && sender.peer !== author) {
      // held already: its place in the order moves (a re-publish), its owner stays
      this.keys.delete(id)
      this.keys.add(id)
      return dropped
    }
    this.forget(id)
    this.keys.add(id)
    if (sender != null) {
      let own = this.bySender.get(sender.bucket)
      if (own == null) this.bySender.set(sender.bucket, own = new Set())
      own.add(id)
      this.senderOf.set(id, sender.bucket)
      this.resized(sender.bucket, own.size - 1, own.size)
      const groupKey = this.groupKey(sender.bucket, id)
      if (groupKey != null) {
        let grouped = this.bySenderGroup.get(groupKey)
        if (grouped == null) this.bySenderGroup.set(groupKey, grouped = new Set())
        grouped.add(id)
        while (grouped.size > this.group!.max) this.drop(grouped, dropped, 'sender')
      }
      while (own.size > this.maxPerSender) this.drop(own, dropped, 'sender')
    }
    // for room: the oldest of the sender holding most, so that a flood from
    // many addresses, each under its own bound, still pushes out its own;
    // the oldest of all only when no sender holds anything
    while (this.keys.size > this.max) {
      const sender = this.bySize[this.largest]?.values().next().value
      this.drop(sender == null ? this.keys : this.bySender.get(sender)!, dropped, 'room')
    }
    return dropped
  }

  /** Drops the oldest key of `from` (a sender's or a group's keys, or all), and counts why. */
  private drop (from: Set<string>, dropped: string[], why: 'sender' | 'room'): void {
    const oldest = from.values().next().value!
    this.forget(oldest)
    dropped.push(oldest)
    if (why === 'room') this.evicted++
    else this.evictedOverSenderBound++
  }

  /** Keys held now that are `bucket`'s. */
  heldBy (bucket: string): number {
    return this.bySender.get(bucket)?.size ?? 0
  }

  forget (id: string): void {
    this.keys.delete(id)
    const sender = this.senderOf.get(id)
    if (sender == null) return
    this.senderOf.delete(id)
    const own = this.bySender.get(sender)!
    own.delete(id)
    this.resized(sender, own.size + 1, own.size)
    if (own.size === 0) this.bySender.delete(sender)
    const groupKey = this.groupKey(sender, id)
    if (groupKey == null) return
    const grouped = this.bySenderGroup.get(groupKey)!
    grouped.delete(id)
    if (grouped.size === 0) this.bySenderGroup.delete(groupKey)
  }

  /** Moves `bucket` from the senders holding `from` keys to those holding `to`. */
  private resized (bucket: string, from: number, to: number): void {
    if (from > 0) this.bySize[from].delete(bucket)
    if (to > 0) (this.bySize[to] ??= new Set()).add(bucket)
    if (to > this.largest) this.largest = to
    while (this.largest > 0 && (this.bySize[this.largest]?.size ?? 0) === 0) this.largest--
  }
}

export class BoundedDhtDatastore extends MemoryDatastore {
  private readonly records: BoundedKeys
  private readonly providers: BoundedKeys
  private readonly senders?: DhtSenders
  private readonly recordAuthor?: (recordKey: Uint8Array) => string | undefined
  private readonly self?: string
  private readonly keepHeld?: (incoming: Uint8Array, held: Uint8Array) => boolean
  /** Record writes refused since start because the record held was newer. */
  private olderRefused = 0

  constructor (init: BoundedDhtDatastoreInit = {}) {
    super()
    const prefix = init.prefix ?? '/dht'
    const perSender = init.maxPerSender ?? MAX_DHT_ENTRIES_PER_SENDER
    this.records = new BoundedKeys(`${prefix}/record/`, init.maxRecords ?? MAX_DHT_RECORDS, perSender)
    // a provider entry is /provider/<key>/<provider>: grouped by key
    this.providers = new BoundedKeys(`${prefix}/provider/`, init.maxProviderEntries ?? MAX_DHT_PROVIDER_ENTRIES, perSender, {
      of: id => id.slice(0, id.lastIndexOf('/')),
      max: init.maxProvidersPerSenderAndKey ?? MAX_DHT_PROVIDERS_PER_SENDER_AND_KEY
    })
    this.senders = init.senders
    this.recordAuthor = init.recordAuthor
    this.self = init.self
    this.keepHeld = init.keepHeld
  }

  put (key: Key, val: Uint8Array, options?: AbortOptions): Key | Promise<Key> {
    const id = key.toString()
    const kind = this.kindOf(id)
    if (kind == null) return super.put(key, val, options)
    const from = this.senders?.current.getStore()
    const author = this.authorOf(kind, id)
    // the node's own entries are its own, whatever context the write runs in
    const sender = author != null && author === this.self ? undefined : from
    // an older record refused, but from its author (the node itself writing, included): an exit whose
    // clock went back, restarted, signs a lower seq than the ad it put before, and must replace it.
    // A peer that puts back the node's own old ad is not its author
    const byAuthor = author != null && (from == null ? author === this.self : from.peer === author)
    if (kind === this.records && this.keepHeld != null && !byAuthor && kind.keys.has(id)) {
      const held = super.get(key)
      if (held instanceof Uint8Array && this.keepHeld(val, held)) {
        this.olderRefused++
        return key
      }
    }
    const written = super.put(key, val, options)
    for (const dropped of kind.written(id, sender, sender == null ? undefined : author)) void super.delete(new Key(dropped))
    return written
  }

  delete (key: Key, options?: AbortOptions): void | Promise<void> {
    const deleted = super.delete(key, options)
    const id = key.toString()
    this.kindOf(id)?.forget(id)
    return deleted
  }

  /** Records or provider entries, by the key's prefix; undefined for the rest (the peer store's keys). */
  private kindOf (id: string): BoundedKeys | undefined {
    return id.startsWith(this.records.prefix) ? this.records : id.startsWith(this.providers.prefix) ? this.providers : undefined
  }

  /** An entry's author, from its key: a record's as recordAuthor reads it (kad-dht writes it as base32 after the prefix), a provider entry's provider (the key's last part). */
  private authorOf (kind: BoundedKeys, id: string): string | undefined {
    if (kind === this.providers) return id.slice(id.lastIndexOf('/') + 1)
    if (this.recordAuthor == null) return undefined
    try {
      return this.recordAuthor(uint8ArrayFromString(id.slice(kind.prefix.length), 'base32'))
    } catch {
      return undefined
    }
  }

  /** Entries dropped for room since start, by kind. */
  get evicted (): { records: number, providers: number } {
    return { records: this.records.evicted, providers: this.providers.evicted }
  }

  /** Record writes refused since start because the record held was newer (keepHeld). */
  get refusedOlder (): number {
    return this.olderRefused
  }

  /** Entries dropped since start because the peer that wrote them wrote more than its bound, by kind. */
  get evictedOverSenderBound (): { records: number, providers: number } {
    return { records: this.records.evictedOverSenderBound, providers: this.providers.evictedOverSenderBound }
  }

  /** DHT records and provider entries held now that are a sender bucket's (senderBucket(); BoundedKeys says which are whose). */
  heldBy (bucket: string): { records: number, providers: number } {
    return { records: this.records.heldBy(bucket), providers: this.providers.heldBy(bucket) }
  }

  /** DHT records and provider entries held now. */
  get sizes (): { records: number, providers: number } {
    return { records: this.records.keys.size, providers: this.providers.keys.size }
  }
}
