/**
 * The node's libp2p datastore: in memory, as libp2p's default, but with the
 * DHT's records and provider entries bounded.
 *
 * kad-dht stores every valid record a peer puts, and every provider entry
 * it announces, with no limit per peer or in all. Keys are free, so a peer
 * can sign capacity ads under as many keys as it likes: a hostile-peer
 * review put 4,000 (about 3.8 KB each) into an exit without one refused.
 * Here, past a bound, the entry written longest ago goes first: honest
 * records are put again on every re-publish (each ad hourly, each provider
 * entry at its re-provide), so they come back to the front, while a flood
 * pushes out its own older entries. The bounds are far above what an
 * honest network stores on one node: each record goes to the 20 peers
 * closest to its key, so a node holds about 20 x (exits / nodes) ads.
 *
 * The peer store, which shares this datastore, is not bounded here.
 */

import { MemoryDatastore } from 'datastore-core/memory'
import { Key } from 'interface-datastore'
import type { AbortOptions } from '@libp2p/interface'

/** DHT records (capacity ads) kept at most: about 38 MB of ads. */
export const MAX_DHT_RECORDS = 10_000
/** Provider entries (an exit providing a region key) kept at most. */
export const MAX_DHT_PROVIDER_ENTRIES = 100_000

export interface BoundedDhtDatastoreInit {
  /** kad-dht's datastorePrefix. @default '/dht' */
  prefix?: string
  /** @default MAX_DHT_RECORDS */
  maxRecords?: number
  /** @default MAX_DHT_PROVIDER_ENTRIES */
  maxProviderEntries?: number
}

/** Keys under one prefix, oldest write first, at most `max` of them. */
class BoundedKeys {
  /** Insertion-ordered: a key written again moves to the end. */
  readonly keys = new Set<string>()
  /** Keys dropped for room since start. */
  evicted = 0
  constructor (readonly prefix: string, readonly max: number) {}
}

export class BoundedDhtDatastore extends MemoryDatastore {
  private readonly bounded: BoundedKeys[]

  constructor (init: BoundedDhtDatastoreInit = {}) {
    super()
    const prefix = init.prefix ?? '/dht'
    this.bounded = [
      new BoundedKeys(`${prefix}/record/`, init.maxRecords ?? MAX_DHT_RECORDS),
      new BoundedKeys(`${prefix}/provider/`, init.maxProviderEntries ?? MAX_DHT_PROVIDER_ENTRIES)
    ]
  }

  put (key: Key, val: Uint8Array, options?: AbortOptions): Key | Promise<Key> {
    const written = super.put(key, val, options)
    const id = key.toString()
    const kind = this.bounded.find(b => id.startsWith(b.prefix))
    if (kind != null) {
      kind.keys.delete(id)
      kind.keys.add(id)
      while (kind.keys.size > kind.max) {
        const oldest = kind.keys.values().next().value!
        kind.keys.delete(oldest)
        void super.delete(new Key(oldest))
        kind.evicted++
      }
    }
    return written
  }

  delete (key: Key, options?: AbortOptions): void | Promise<void> {
    const deleted = super.delete(key, options)
    const id = key.toString()
    this.bounded.find(b => id.startsWith(b.prefix))?.keys.delete(id)
    return deleted
  }

  /** Entries dropped for room since start, by kind. */
  get evicted (): { records: number, providers: number } {
    return { records: this.bounded[0].evicted, providers: this.bounded[1].evicted }
  }

  /** DHT records and provider entries held now. */
  get sizes (): { records: number, providers: number } {
    return { records: this.bounded[0].keys.size, providers: this.bounded[1].keys.size }
  }
}
