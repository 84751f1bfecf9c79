/**
 * The DHT's records and provider entries are bounded: kad-dht stores every
 * valid record a peer puts, and keys are free (a hostile-peer review put
 * 4,000 capacity ads into an exit). The datastore on its own with small
 * bounds, then in real nodes, where kad-dht's own writes must land under
 * the prefixes it bounds.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Key } from 'interface-datastore'
import { BoundedDhtDatastore, MAX_DHT_ENTRIES_PER_SENDER } from '../../src/node/dht-datastore.ts'
import { DhtSenders, senderBucket } from '../../src/node/dht-senders.ts'
import { startExitAndConsumer } from '../utils/in-process.ts'
import { waitFor } from '../utils/cli.ts'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { DHT_PROTOCOL } from '../../src/constants.ts'
import { capacityKey, capacitySelector, capacityValidator, decodeCapacityAd, encodeCapacityAd, signCapacityAd } from '../../src/routing/capacity-ad.ts'
import { Libp2pRecord } from '@libp2p/record'
import type { CapacityAd } from '../../src/routing/capacity-ad.ts'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
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

  it('bounds what one sender wrote: past its bound its own oldest entry goes, nobody else\'s; the node\'s own writes have no sender', async () => {
    const senders = new DhtSenders()
    const ds = new BoundedDhtDatastore({ maxRecords: 100, maxProviderEntries: 100, maxPerSender: 2, senders })
    const putAs = async (sender: string | undefined, key: string): Promise<unknown> => sender == null ? ds.put(new Key(key), bytes(1)) : senders.current.run({ peer: sender, bucket: sender }, async () => ds.put(new Key(key), bytes(1)))
    await putAs('honest', '/dht/record/h')
    await putAs(undefined, '/dht/record/own1')
    await putAs(undefined, '/dht/record/own2')
    await putAs(undefined, '/dht/record/own3')
    for (const k of ['f1', 'f2', 'f3', 'f4']) await putAs('flooder', `/dht/record/${k}`)
    expect(await ds.has(new Key('/dht/record/f1'))).toBe(false)
    expect(await ds.has(new Key('/dht/record/f2'))).toBe(false)
    for (const k of ['h', 'own1', 'own2', 'own3', 'f3', 'f4']) expect(await ds.has(new Key(`/dht/record/${k}`)), k).toBe(true)
    expect(ds.heldBy('flooder')).toEqual({ records: 2, providers: 0 })
    expect(ds.heldBy('honest')).toEqual({ records: 1, providers: 0 })
    expect(ds.evictedOverSenderBound).toEqual({ records: 2, providers: 0 })
    expect(ds.evicted).toEqual({ records: 0, providers: 0 })
    // a held key another peer writes again (a lookup's correction, or a flooder putting back an honest ad)
    // stays its first writer's: else the flooder's next writes would push it out as its own oldest
    await putAs('flooder', '/dht/record/h')
    await putAs('flooder', '/dht/record/own1')
    expect(ds.heldBy('honest').records).toBe(1)
    expect(ds.heldBy('flooder').records).toBe(2)
    for (const k of ['f5', 'f6', 'f7']) await putAs('flooder', `/dht/record/${k}`)
    for (const k of ['h', 'own1', 'own2', 'own3', 'f6', 'f7']) expect(await ds.has(new Key(`/dht/record/${k}`)), k).toBe(true)
    // after an await too: the sender is the one of the call chain
    await senders.current.run({ peer: 'flooder', bucket: 'flooder' }, async () => {
      await new Promise(resolve => setTimeout(resolve, 5))
      await ds.put(new Key('/dht/provider/region/p1'), bytes(1))
    })
    expect(ds.heldBy('flooder')).toEqual({ records: 2, providers: 1 })
    // a deleted key is nobody's
    await ds.delete(new Key('/dht/record/f7'))
    expect(ds.heldBy('flooder').records).toBe(1)
  })

  it('for room, the sender holding most gives way first: a flood from many addresses, each under its bound, pushes out its own', async () => {
    const senders = new DhtSenders()
    const ds = new BoundedDhtDatastore({ maxRecords: 10, maxPerSender: 4, senders })
    const putAs = async (bucket: string | undefined, key: string): Promise<unknown> => bucket == null ? ds.put(new Key(key), bytes(1)) : senders.current.run({ peer: bucket, bucket }, async () => ds.put(new Key(key), bytes(1)))
    // the honest entries are the oldest: written before the flood, and put again only every few hours
    await putAs('honest', '/dht/record/h')
    await putAs(undefined, '/dht/record/own')
    for (const flooder of ['a1', 'a2', 'a3', 'a4']) for (let i = 0; i < 4; i++) await putAs(flooder, `/dht/record/${flooder}-${i}`)
    expect(ds.sizes.records).toBe(10)
    expect(await ds.has(new Key('/dht/record/h'))).toBe(true)
    expect(await ds.has(new Key('/dht/record/own'))).toBe(true)
    expect(ds.evicted.records).toBe(8)
    // each flooder kept about as many as the others
    const held = ['a1', 'a2', 'a3', 'a4'].map(b => ds.heldBy(b).records)
    expect(held.reduce((a, b) => a + b, 0)).toBe(8)
    expect(Math.max(...held) - Math.min(...held)).toBeLessThanOrEqual(1)
  })

  it('a record its author writes is the author\'s, even one a flooder put first', async () => {
    const senders = new DhtSenders()
    // keys as kad-dht writes them: the record key in base32; here the "author" is the key's text after "ad-"
    const recordAuthor = (key: Uint8Array): string | undefined => /^ad-(.+)$/.exec(Buffer.from(key).toString())?.[1]
    const ds = new BoundedDhtDatastore({ maxPerSender: 2, senders, recordAuthor })
    const keyOf = (name: string): Key => new Key(`/dht/record/${uint8ArrayToString(Buffer.from(name), 'base32')}`)
    const putAs = async (sender: string, name: string): Promise<unknown> => senders.current.run({ peer: sender, bucket: sender }, async () => ds.put(keyOf(name), bytes(1)))
    // the flooder fetched the exit's ad before it reached this node, and put it first: the flooder's
    await putAs('flooder', 'ad-exit')
    expect(ds.heldBy('flooder').records).toBe(1)
    // the exit's own write (its hourly re-publish) makes it the exit's
    await putAs('exit', 'ad-exit')
    expect(ds.heldBy('exit').records).toBe(1)
    expect(ds.heldBy('flooder').records).toBe(0)
    for (const k of ['ad-x1', 'ad-x2', 'ad-x3', 'ad-exit']) await putAs('flooder', k)
    expect(await ds.has(keyOf('ad-exit'))).toBe(true)
    expect(await ds.has(keyOf('ad-x1'))).toBe(false)
    expect(ds.heldBy('flooder').records).toBe(2)
    // the node's own write makes a key its own: an exit restarted with an empty store, into which a
    // flooder put the exit's old ad first, takes it back at its next publish
    await putAs('flooder', 'ad-self')
    expect(ds.heldBy('flooder').records).toBe(2)
    await ds.put(keyOf('ad-self'), bytes(2))
    expect(ds.heldBy('flooder').records).toBe(1)
    for (const k of ['ad-y1', 'ad-y2', 'ad-y3']) await putAs('flooder', k)
    expect(await ds.has(keyOf('ad-self'))).toBe(true)
  })

  it('the node\'s own ad and provider entries are its own, even written in a context that carries a remote sender', async () => {
    const senders = new DhtSenders()
    const recordAuthor = (key: Uint8Array): string | undefined => /^ad-(.+)$/.exec(Buffer.from(key).toString())?.[1]
    const ds = new BoundedDhtDatastore({ maxPerSender: 1, senders, recordAuthor, self: 'me' })
    const ownAd = new Key(`/dht/record/${uint8ArrayToString(Buffer.from('ad-me'), 'base32')}`)
    // say a queue shared with a handler ran the node's publish in the handler's context
    await senders.current.run({ peer: 'flooder', bucket: 'flooder' }, async () => {
      await ds.put(ownAd, bytes(1))
      await ds.put(new Key('/dht/provider/de/me'), bytes(1))
    })
    expect(ds.heldBy('flooder')).toEqual({ records: 0, providers: 0 })
    await senders.current.run({ peer: 'flooder', bucket: 'flooder' }, async () => {
      for (const k of ['ad-x1', 'ad-x2']) await ds.put(new Key(`/dht/record/${uint8ArrayToString(Buffer.from(k), 'base32')}`), bytes(1))
    })
    expect(await ds.has(ownAd)).toBe(true)
    expect(await ds.has(new Key('/dht/provider/de/me'))).toBe(true)
  })

  it('one sender holds at most a few providers of one key: an address with many fresh peer ids cannot fill a region\'s list', async () => {
    const senders = new DhtSenders()
    const ds = new BoundedDhtDatastore({ maxPerSender: 100, maxProvidersPerSenderAndKey: 2, senders })
    const provide = async (bucket: string, region: string, peer: string): Promise<unknown> => senders.current.run({ peer, bucket }, async () => ds.put(new Key(`/dht/provider/${region}/${peer}`), bytes(1)))
    for (const p of ['s1', 's2', 's3']) await provide('ip4/203.0.113.7', 'de', p)
    await provide('ip4/203.0.113.7', 'fr', 's1')
    await provide('ip4/198.51.100.1', 'de', 'honest')
    expect(await ds.has(new Key('/dht/provider/de/s1'))).toBe(false)
    for (const k of ['de/s2', 'de/s3', 'fr/s1', 'de/honest']) expect(await ds.has(new Key(`/dht/provider/${k}`)), k).toBe(true)
    expect(ds.evictedOverSenderBound.providers).toBe(1)
    expect(ds.heldBy('ip4/203.0.113.7').providers).toBe(3)
    // an entry that goes (expired, deleted) frees its place in the key's count
    await ds.delete(new Key('/dht/provider/de/s2'))
    await provide('ip4/203.0.113.7', 'de', 's4')
    expect(await ds.has(new Key('/dht/provider/de/s3'))).toBe(true)
    expect(ds.evictedOverSenderBound.providers).toBe(1)
  })

  it('on the public network writes count by IP address (an IPv6 /64), which a flooder cannot mint as it mints peer ids (a relayed connection by its relay\'s), or in one bucket with no address; in a local testnet, by peer', async () => {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const at = (addr: string): { remoteAddr: Multiaddr, remotePeer: PeerId } => ({ remoteAddr: multiaddr(addr), remotePeer: peer })
    expect(senderBucket(at('/ip4/203.0.113.7/tcp/4001'), true)).toBe('ip4/203.0.113.7')
    expect(senderBucket(at('/ip4/203.0.113.7/udp/4001/webrtc-direct'), true)).toBe('ip4/203.0.113.7')
    expect(senderBucket(at('/ip6/2001:db8:1:2:aaaa::1/tcp/4001'), true)).toBe('ip6/2001:db8:1:2::/64')
    expect(senderBucket(at('/ip6/2001:db8:1:2:bbbb::9/tcp/4001'), true)).toBe('ip6/2001:db8:1:2::/64')
    expect(senderBucket(at('/ip6/::ffff:203.0.113.7/tcp/4001'), true)).toBe('ip4/203.0.113.7')
    // through a relay: the relay's address (only a relay that sets no limits carries DHT writes, and any
    // connected peer can act as one, with a fresh id each time: a review made a bucket per id so)
    const relay = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    expect(senderBucket(at(`/ip4/203.0.113.9/tcp/4001/p2p/${relay}/p2p-circuit`), true)).toBe('ip4/203.0.113.9')
    expect(senderBucket(at(`/ip4/203.0.113.9/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${peer.toString()}`), true)).toBe('ip4/203.0.113.9')
    // WebRTC set up through signalling has no address: one bucket for all (a review opened 12 fresh ids so, from one host)
    expect(senderBucket(at(`/webrtc/p2p/${peer.toString()}`), true)).toBe('no-address')
    expect(senderBucket(at('/ip4/127.0.0.1/tcp/4001'), false)).toBe(peer.toString())
  })
})

describe('a node\'s DHT writes', () => {
  let exit: SparebandNode | undefined
  let consumer: SparebandNode | undefined
  let flooder: Libp2p<{ dht: KadDHT }> | undefined
  afterAll(async () => {
    await flooder?.stop()
    await consumer?.stop()
    await exit?.stop()
  })
  const datastoreOf = (n: SparebandNode): BoundedDhtDatastore => (n.libp2p as any).components.datastore

  it('land under the bounded prefixes: the exit\'s capacity ad, put to its DHT peer, is counted there, as the exit\'s', async () => {
    ;({ exit, consumer } = await startExitAndConsumer([9]))
    expect(datastoreOf(consumer)).toBeInstanceOf(BoundedDhtDatastore)
    // the exit puts its ad to the DHT servers closest to its key: here, the consumer (and keeps its own copy)
    await waitFor(() => datastoreOf(consumer!).heldBy(exit!.peerId.toString()).records > 0 && datastoreOf(consumer!).heldBy(exit!.peerId.toString()).providers > 0, { timeoutMs: 20_000, what: 'the exit\'s ad and provider entry at the consumer, as the exit\'s' })
  })

  it('a peer that puts more valid ads than its bound pushes out only its own', async () => {
    const victim = datastoreOf(consumer!)
    const exitAd = (): number => victim.heldBy(exit!.peerId.toString()).records
    expect(exitAd()).toBe(1)
    flooder = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionGater: { denyDialMultiaddr: () => false },
      services: { identify: identify(), ping: ping(), dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: true, peerInfoMapper: passthroughMapper, validators: { spareband: capacityValidator }, selectors: { spareband: capacitySelector } }) }
    })
    await flooder.dial(multiaddr(consumer!.status().addresses[0]))
    // identify tells the flooder's kad-dht that the consumer is a DHT server, and it takes it into its routing table
    await waitFor(async () => (await flooder!.peerStore.get(consumer!.peerId)).protocols.includes(DHT_PROTOCOL), { what: 'the consumer identified as a DHT server' })
    // first the exit's own ad, fetched and put back: were it then the flooder's, the flood would push it out as the flooder's oldest
    const exitKey = capacityKey(exit!.peerId)
    let exitAdBytes: Uint8Array | undefined
    for await (const e of flooder.services.dht.get(exitKey)) if (e.name === 'VALUE') exitAdBytes = e.value
    expect(exitAdBytes).toBeDefined()
    for await (const _ of flooder.services.dht.put(exitKey, exitAdBytes!)) {}
    const ads = MAX_DHT_ENTRIES_PER_SENDER + 44
    for (let i = 0; i < ads; i++) {
      // an ad signed by a key of its own, as any peer can make: valid, fresh, under its own key
      const key = await generateKeyPair('Ed25519')
      const ad = await signCapacityAd({ region: 'de', capacityMbps: 100, load: 0, pricePerGbMicro: 1, allowedPorts: '443', multiaddrs: ['/ip4/127.0.0.1/tcp/9'], seq: Date.now(), expiresAt: Date.now() + 3_600_000 }, key)
      for await (const _ of flooder.services.dht.put(capacityKey(peerIdFromPrivateKey(key)), encodeCapacityAd(ad))) {}
    }
    const mine = flooder.peerId.toString()
    expect(victim.heldBy(mine).records).toBe(MAX_DHT_ENTRIES_PER_SENDER)
    expect(victim.evictedOverSenderBound.records).toBe(44)
    expect(exitAd()).toBe(1)
    expect(await victim.has(new Key(`/dht/record/${uint8ArrayToString(exitKey, 'base32')}`))).toBe(true)
    // and its operator sees it in status
    const { dht } = consumer!.status()
    expect(dht.dropped).toEqual({ forRoom: { records: 0, providers: 0 }, overPeerBound: { records: 44, providers: 0 }, olderRecords: 0 })
    expect(dht.stored.records).toBe(victim.sizes.records)
    expect(dht.stored.records).toBeGreaterThanOrEqual(MAX_DHT_ENTRIES_PER_SENDER + 1)
  }, 120_000)

  it('a replayed older ad does not replace the newer one held', async () => {
    const victim = datastoreOf(consumer!)
    const exitKey = capacityKey(exit!.peerId)
    const recordKey = new Key(`/dht/record/${uint8ArrayToString(exitKey, 'base32')}`)
    const adHeld = (): CapacityAd => decodeCapacityAd(Libp2pRecord.deserialize(victim.get(recordKey) as Uint8Array).value)
    const old = adHeld()
    // the exit pauses: its ad says so, with a higher seq, at once
    await exit!.pauseExit()
    await waitFor(() => adHeld().seq! > old.seq!, { timeoutMs: 20_000, what: 'the exit\'s new ad at the consumer' })
    const newer = adHeld()
    // the flooder puts the old one back (still valid: unexpired, the exit's signature)
    for await (const _ of flooder!.services.dht.put(exitKey, encodeCapacityAd(old))) {}
    expect(adHeld().seq).toBe(newer.seq)
    expect(consumer!.status().dht.dropped.olderRecords).toBeGreaterThanOrEqual(1)
    // nor in the exit's own store: a peer that puts back the node's own old ad is not its author
    const atExit = datastoreOf(exit!)
    expect(atExit.refusedOlder).toBeGreaterThanOrEqual(1)
    expect(decodeCapacityAd(Libp2pRecord.deserialize(atExit.get(recordKey) as Uint8Array).value).seq).toBe(newer.seq)
    // but the exit itself may go back: its clock went back and it restarted, say
    const back = await signCapacityAd({ region: 'de', capacityMbps: 5, load: 0, pricePerGbMicro: 1, allowedPorts: '9', multiaddrs: exit!.status().addresses, seq: old.seq! - 1n, expiresAt: Date.now() + 3_600_000 }, exit!.identity.privateKey)
    for await (const _ of (exit!.libp2p.services.dht as KadDHT).put(exitKey, encodeCapacityAd(back))) {}
    expect(adHeld().seq).toBe(old.seq! - 1n)
    await exit!.resumeExit()
  }, 60_000)
})
