/**
 * An exit that moved to another relay: its newer ad drops the old circuit
 * from the consumer's peer store (which only ever gained addresses, so
 * every dial tried the dead circuit first), and a consumer that could not
 * reach it fetches that ad again, at most every AD_REFETCH_INTERVAL_MS.
 * A real libp2p peer store; the DHT's get is a stand-in that serves the
 * exit's latest signed ad.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { defaultLogger } from '@libp2p/logger'
import { AD_REFETCH_INTERVAL_MS, ExitDiscovery } from '../../src/routing/discovery.ts'
import { capacityKey, encodeCapacityAd, signCapacityAd } from '../../src/routing/capacity-ad.ts'
import { loopbackNode } from '../utils/libp2p.ts'
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
    consumer = await loopbackNode()
    exitKey = await generateKeyPair('Ed25519')
    exit = peerIdFromPrivateKey(exitKey)
    const contentRouting = {
      get: async (key: Uint8Array) => {
        expect(equals(key, capacityKey(exit))).toBe(true)
        gets++
        return served
      }
    }
    discovery = new ExitDiscovery({ libp2p: { contentRouting: contentRouting as any, peerStore: consumer.peerStore, peerId: consumer.peerId }, logger: defaultLogger() }, { now: () => clock })
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

  it('takes an ad fetched again unchanged for no news: a circuit learnt since stays', async () => {
    // identify: the exit holds a reservation on R1 again, newer than its ad
    await consumer.peerStore.merge(exit, { multiaddrs: [multiaddr(R1)] })
    await discovery.fetchAd(exit)
    expect(await stored()).toContain(R1)
  })

  it('fetches the ad again when asked, at most every interval', async () => {
    const before = gets
    await publish(3, [R1])
    discovery.refetch(exit)
    discovery.refetch(exit)
    await waitFor(() => discovery.ad(exit)?.seq === 3n, { what: 'the refetched ad' })
    expect(gets - before).toBe(1)
    expect(await stored()).toEqual([R1, DIRECT, '/ip4/11.77.9.10/tcp/4001'].sort())

    // within the interval: not asked again; after it: asked
    clock += AD_REFETCH_INTERVAL_MS - 1
    discovery.refetch(exit)
    expect(gets - before).toBe(1)
    clock += 1
    await publish(4, [R2])
    discovery.refetch(exit)
    await waitFor(() => discovery.ad(exit)?.seq === 4n, { what: 'the second refetch' })
    expect(gets - before).toBe(2)
    expect(await stored()).toEqual([R2, DIRECT, '/ip4/11.77.9.10/tcp/4001'].sort())
  })
})
