/**
 * The DHT's records and provider entries are bounded: kad-dht stores every
 * valid record a peer puts, and keys are free (a hostile-peer review put
 * 4,000 capacity ads into an exit). The datastore on its own with small
 * bounds, then in real nodes, where kad-dht's own writes must land under
 * the prefixes it bounds.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Key } from 'interface-datastore'
import { BoundedDhtDatastore } from '../../src/node/dht-datastore.ts'
import { startExitAndConsumer } from '../utils/in-process.ts'
import { waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'

const bytes = (n: number): Uint8Array => new Uint8Array(n).fill(7)

describe('the bounded DHT datastore', () => {
  it('drops the record written longest ago past its bound; a record written again is new; other keys are not bounded', async () => {
    const ds = new BoundedDhtDatastore({ maxRecords: 3, maxProviderEntries: 2 })
    for (const k of ['a', 'b', 'c']) await ds.put(new Key(`/dht/record/${k}`), bytes(1))
    // a is written again (a re-publish): it moves to the end, and b is now the oldest
    await ds.put(new Key('/dht/record/a'), bytes(2))
    await ds.put(new Key('/dht/record/d'), bytes(1))
    expect(await ds.has(new Key('/dht/record/b'))).toBe(false)
    for (const k of ['a', 'c', 'd']) expect(await ds.has(new Key(`/dht/record/${k}`))).toBe(true)
    expect(await ds.get(new Key('/dht/record/a'))).toEqual(bytes(2))
    // provider entries have a bound of their own
    for (const k of ['x', 'y', 'z']) await ds.put(new Key(`/dht/provider/region/${k}`), bytes(1))
    expect(ds.sizes).toEqual({ records: 3, providers: 2 })
    expect(await ds.has(new Key('/dht/provider/region/x'))).toBe(false)
    expect(ds.evicted).toEqual({ records: 1, providers: 1 })
    // the peer store shares the datastore: never dropped
    for (let i = 0; i < 10; i++) await ds.put(new Key(`/peers/${i}`), bytes(1))
    for (let i = 0; i < 10; i++) expect(await ds.has(new Key(`/peers/${i}`))).toBe(true)
    // a deleted record frees its place
    await ds.delete(new Key('/dht/record/c'))
    expect(ds.sizes.records).toBe(2)
    await ds.put(new Key('/dht/record/e'), bytes(1))
    expect(await ds.has(new Key('/dht/record/a'))).toBe(true)
    // batches go through put and delete too
    const batch = ds.batch()
    for (const k of ['f', 'g', 'h']) batch.put(new Key(`/dht/record/${k}`), bytes(1))
    await batch.commit()
    expect(ds.sizes.records).toBe(3)
  })
})

describe('a node\'s DHT writes', () => {
  let exit: SparebandNode | undefined
  let consumer: SparebandNode | undefined
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
  })

  it('land under the bounded prefixes: the exit\'s capacity ad, put to its DHT peer, is counted there', async () => {
    ;({ exit, consumer } = await startExitAndConsumer([9]))
    const datastoreOf = (n: SparebandNode): BoundedDhtDatastore => (n.libp2p as any).components.datastore
    expect(datastoreOf(consumer)).toBeInstanceOf(BoundedDhtDatastore)
    // the exit puts its ad to the DHT servers closest to its key: here, the consumer (and keeps its own copy)
    await waitFor(() => datastoreOf(consumer!).sizes.records > 0 && datastoreOf(consumer!).sizes.providers > 0, { timeoutMs: 20_000, what: 'the exit\'s ad and provider entry at the consumer' })
  })
})
