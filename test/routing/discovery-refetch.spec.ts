/**
 * An exit that moved to another relay: its newer ad drops the old circuit
 * from the consumer's peer store (which only ever gained addresses, so
 * every dial tried the dead circuit first) and keeps it from coming back
 * (the DHT's provider records hand it out for an hour); a consumer that
 * could not reach the exit fetches that ad again, not too often. A real
 * libp2p peer store with the node's address filter; the DHT's get is a
 * stand-in that serves the exit's latest signed ad.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { defaultLogger } from '@libp2p/logger'
import { createLibp2p } from 'libp2p'
import { AD_REFETCH_INTERVAL_MS, AD_REFETCH_UNCHANGED_BEFORE_BACKOFF, ExitDiscovery, MAX_REFETCHES_AT_ONCE } from '../../src/routing/discovery.ts'
import { AdvertisedRelays } from '../../src/routing/advertised-relays.ts'
import { peerAddressFilter } from '../../src/node/peer-address-filter.ts'
import { capacityKey, encodeCapacityAd, signCapacityAd } from '../../src/routing/capacity-ad.ts'
import { waitFor } from '../utils/cli.ts'
import { equals } from 'uint8arrays/equals'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'

const R1 = '/ip4/11.77.3.2/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit'
const R2 = '/ip4/11.77.1.5/tcp/4001/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE/p2p-circuit'
const DIRECT = '/ip4/11.77.9.9/tcp/4001'

describe('an exit\'s ad fetched again', () => {
  let consumer: Libp2p
  let exitKey: PrivateKey
  let exit: PeerId
  /** The ad the stand-in DHT serves now, and how often it was asked. */
  let served: Uint8Array
  let gets = 0
  let clock = Date.now()
  let discovery: ExitDiscovery

  const publish = async (seq: number, addrs: string[]): Promise<void> => {
    served = encodeCapacityAd(await signCapacityAd({ region: 'de', capacityMbps: 100, load: 0, pricePerGbMicro: 1_000_000, allowedPorts: '80,443', multiaddrs: addrs, seq, expiresAt: Date.now() + 3_600_000 }, exitKey))
  }
  const stored = async (): Promise<string[]> => (await consumer.peerStore.get(exit)).addresses.map(a => a.multiaddr.toString()).sort()

  beforeAll(async () => {
    const key = await generateKeyPair('Ed25519')
    const relays = new AdvertisedRelays(() => clock)
    // the node's peer store: its address filter asks the relays the exits' newest ads name
    consumer = await createLibp2p({ privateKey: key, peerStore: { addressFilter: peerAddressFilter(peerIdFromPrivateKey(key), { publicOnly: true, advertisedRelays: relays }) } })
    exitKey = await generateKeyPair('Ed25519')
    exit = peerIdFromPrivateKey(exitKey)
    const contentRouting = {
      get: async (key: Uint8Array) => {
        expect(equals(key, capacityKey(exit))).toBe(true)
        gets++
        return served
      }
    }
    discovery = new ExitDiscovery({ libp2p: { contentRouting: contentRouting as any, peerStore: consumer.peerStore, peerId: consumer.peerId }, logger: defaultLogger(), advertisedRelays: relays }, { now: () => clock })
    discovery.start()
  })
  afterAll(async () => { discovery.stop(); await consumer.stop() })

  it('drops the circuits a newer ad no longer names, and keeps the other addresses', async () => {
    await publish(1, [R1, DIRECT])
    await discovery.fetchAd(exit)
    // identify told of a circuit too (the same as the ad's here), and an address of its own
    await consumer.peerStore.merge(exit, { multiaddrs: [multiaddr('/ip4/11.77.9.10/tcp/4001')] })
    expect(await stored()).toEqual([R1, DIRECT, '/ip4/11.77.9.10/tcp/4001'].sort())

    // R1 died; the exit reserved on R2 and published again
    await publish(2, [R2, DIRECT])
    await discovery.fetchAd(exit)
    expect(await stored()).toEqual([R2, DIRECT, '/ip4/11.77.9.10/tcp/4001'].sort())
    expect(discovery.ad(exit)?.seq).toBe(2n)
  })

  it('keeps the dropped circuit out, whoever brings it back (a provider lookup, identify), until a newer ad names its relay', async () => {
    await consumer.peerStore.merge(exit, { multiaddrs: [multiaddr(R1), multiaddr(`${R1.replace('/tcp/4001', '/udp/4001/webrtc-direct')}`)] })
    expect(await stored()).toEqual([R2, DIRECT, '/ip4/11.77.9.10/tcp/4001'].sort())
    // fetched again unchanged: the same
    await discovery.fetchAd(exit)
    expect(await stored()).toEqual([R2, DIRECT, '/ip4/11.77.9.10/tcp/4001'].sort())
  })

  it('fetches the ad again when asked: once while one runs, then not within the interval, which doubles once the ad has come back unchanged a few times', async () => {
    const before = gets
    await publish(3, [R1])
    discovery.refetch(exit)
    discovery.refetch(exit)
    await waitFor(() => discovery.ad(exit)?.seq === 3n, { what: 'the refetched ad' })
    expect(gets - before).toBe(1)
    // back on r1: r2 leaves, r1 may come in
    expect(await stored()).toEqual([R1, DIRECT, '/ip4/11.77.9.10/tcp/4001'].sort())

    // news: the next may come one interval later
    clock += AD_REFETCH_INTERVAL_MS - 1
    discovery.refetch(exit)
    expect(gets - before).toBe(1)
    clock += 1
    // unchanged now: the short interval holds for the first few (the exit may republish any moment)...
    let asked = 1
    for (let i = 0; i < AD_REFETCH_UNCHANGED_BEFORE_BACKOFF; i++) {
      discovery.refetch(exit)
      asked++
      await waitFor(() => gets - before === asked, { what: `refetch ${asked}` })
      await new Promise(resolve => setTimeout(resolve, 20))
      clock += AD_REFETCH_INTERVAL_MS
    }
    // ...then it doubles
    discovery.refetch(exit)
    expect(gets - before).toBe(asked)
    clock += AD_REFETCH_INTERVAL_MS
    await publish(4, [R2])
    discovery.refetch(exit)
    await waitFor(() => discovery.ad(exit)?.seq === 4n, { what: 'the ad with news' })
    expect(gets - before).toBe(asked + 1)
    expect(await stored()).toEqual([R2, DIRECT, '/ip4/11.77.9.10/tcp/4001'].sort())
  })
})

describe('refetches over all exits', () => {
  it(`run ${MAX_REFETCHES_AT_ONCE} at once at most: an outage that fails every exit does not flood the DHT`, async () => {
    const consumer = await createLibp2p({})
    let running = 0
    let most = 0
    const release: Array<() => void> = []
    const contentRouting = {
      get: async () => {
        running++
        most = Math.max(most, running)
        await new Promise<void>(resolve => release.push(resolve))
        running--
        throw new Error('not found')
      }
    }
    const discovery = new ExitDiscovery({ libp2p: { contentRouting: contentRouting as any, peerStore: consumer.peerStore, peerId: consumer.peerId }, logger: defaultLogger() })
    discovery.start()
    const exits = await Promise.all(Array.from({ length: MAX_REFETCHES_AT_ONCE + 3 }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    for (const e of exits) discovery.refetch(e)
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(most).toBe(MAX_REFETCHES_AT_ONCE)
    for (const r of release.splice(0)) r()
    await waitFor(() => running === 0, { what: 'the refetches to end' })
    discovery.stop()
    await consumer.stop()
  })
})
