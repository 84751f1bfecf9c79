/**
 * The advertiser republishes its capacity ad when an address it names
 * changes, not on every update of the node's own record: libp2p fires
 * self:peer:update for protocol changes and autonat's checks too, and each
 * publication is a DHT put and a provide per region key. A change during a
 * publication is published when it ends; an ad no DHT server took is not
 * published. The DHT here is a recorder (what is published, not how the
 * DHT spreads it, is under test; advertise-servers.spec has real kad-dht).
 */

import { afterEach, expect, it } from 'vitest'
import { TypedEventEmitter } from 'main-event'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { Advertiser } from '../../src/routing/advertiser.ts'
import { decodeCapacityAd } from '../../src/routing/capacity-ad.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import { AD_SEQ_FILE, MAX_KEPT_SEQ, adSeqFile } from '../../src/node/ad-seq-file.ts'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Multiaddr } from '@multiformats/multiaddr'

const advertisers: Advertiser[] = []
afterEach(async () => { for (const a of advertisers.splice(0)) await a.stop({ signal: AbortSignal.timeout(100) }) })

/**
 * An advertiser for region de over a libp2p whose addresses `addresses()`
 * gives, with a DHT that records the addresses of each ad it is given and
 * lets `servers()` servers take each message (one unless told), as kad-dht
 * reports them; `beforeAnswer` runs before a put answers.
 */
async function advertiserOver (addresses: () => Multiaddr[], options: { servers?: () => number, beforeAnswer?: (puts: string[][]) => Promise<void> } = {}): Promise<{ advertiser: Advertiser, puts: string[][], events: TypedEventEmitter<{ 'self:peer:update': CustomEvent }> }> {
  const puts: string[][] = []
  const servers = options.servers ?? (() => 1)
  const events = new TypedEventEmitter<{ 'self:peer:update': CustomEvent }>()
  const libp2p = {
    getMultiaddrs: addresses,
    getPeers: () => [{}] as any,
    addEventListener: events.addEventListener.bind(events),
    removeEventListener: events.removeEventListener.bind(events)
  } as any
  const dht = {
    put: async function * (_key: Uint8Array, value: Uint8Array) {
      puts.push(decodeCapacityAd(value).multiaddrs.map(b => multiaddr(b).toString()))
      await options.beforeAnswer?.(puts)
      for (let i = 0; i < servers(); i++) yield { name: 'PEER_RESPONSE', messageType: 'PUT_VALUE' }
    },
    provide: async function * () { for (let i = 0; i < servers(); i++) yield { name: 'PEER_RESPONSE', messageType: 'ADD_PROVIDER' } },
    getMode: () => 'client' as const
  }
  const advertiser = new Advertiser({ libp2p, dht, privateKey: await generateKeyPair('Ed25519'), logger: defaultLogger() }, {
    offer: () => ({ region: 'de', capacityMbps: 100, load: 0, pricePerGbMicro: 1n, allowedPorts: '443' })
  })
  advertisers.push(advertiser)
  await advertiser.start()
  return { advertiser, puts, events }
}

it('republishes on an address change, and not on other updates of self', async () => {
  let addresses: Multiaddr[] = [multiaddr('/ip4/198.51.100.1/tcp/4001'), multiaddr('/ip4/8.8.4.4/tcp/4001')]
  const { puts, events } = await advertiserOver(() => addresses)
  await waitFor(() => puts.length === 1, { what: 'the first ad' })
  // a documentation address is no public one: only 8.8.4.4 goes in
  expect(puts[0]).toEqual(['/ip4/8.8.4.4/tcp/4001'])

  // protocols changed, autonat checked an address: the ad's addresses are the same
  for (let i = 0; i < 5; i++) events.safeDispatchEvent('self:peer:update', { detail: {} })
  addresses = [...addresses, multiaddr('/ip4/10.0.0.9/tcp/4001')]
  events.safeDispatchEvent('self:peer:update', { detail: {} })
  await new Promise(resolve => setTimeout(resolve, 300))
  expect(puts).toHaveLength(1)

  // a new public address: published at once
  addresses = [...addresses, multiaddr('/ip4/9.9.9.9/tcp/4001')]
  events.safeDispatchEvent('self:peer:update', { detail: {} })
  await waitFor(() => puts.length === 2, { what: 'the ad with the new address' })
  expect(puts[1]).toEqual(['/ip4/8.8.4.4/tcp/4001', '/ip4/9.9.9.9/tcp/4001'])
})

it('an address change while a publication is under way is published as soon as that one ends, not at the next republish', async () => {
  let addresses: Multiaddr[] = [multiaddr('/ip4/8.8.4.4/tcp/4001')]
  let release: (() => void) | undefined
  // the first put is slow (a DHT query across the network); the others are quick
  const { advertiser, puts, events } = await advertiserOver(() => addresses, {
    beforeAnswer: async puts => { if (puts.length === 1) await new Promise<void>(resolve => { release = resolve }) }
  })
  await waitFor(() => release != null, { what: 'the first put under way' })
  // the relay reservation lands meanwhile: a new address
  addresses = [...addresses, multiaddr('/ip4/9.9.9.9/tcp/4001')]
  events.safeDispatchEvent('self:peer:update', { detail: {} })
  await new Promise(resolve => setTimeout(resolve, 1500))
  release!()
  await waitFor(() => puts.length === 2, { what: 'the ad with the new address', timeoutMs: 1000 })
  expect(puts[1]).toEqual(['/ip4/8.8.4.4/tcp/4001', '/ip4/9.9.9.9/tcp/4001'])
  expect(advertiser.status()).toMatchObject({ published: true, peersReached: 1 })
})

it('an ad no DHT server took is no publication: retried, and published once a server takes it', async () => {
  let servers = 0
  // kad-dht's put ends without an error when the closest peers it found were none
  const { advertiser, puts } = await advertiserOver(() => [multiaddr('/ip4/8.8.4.4/tcp/4001')], { servers: () => servers })
  await waitFor(() => puts.length >= 2, { what: 'a retry', timeoutMs: 5000 })
  expect(advertiser.status()).toMatchObject({ published: false, peersReached: 0 })
  expect(advertiser.status().lastError).toContain('the ad reached no DHT server')
  servers = 2
  await waitFor(() => advertiser.status().published, { what: 'the ad published', timeoutMs: 10_000 })
  expect(advertiser.status()).toMatchObject({ published: true, peersReached: 2 })
  expect(advertiser.status().lastError).toBeUndefined()
}, 20_000)

it('signs seqs past every seq signed before, kept across restarts, whatever the clock says (ad-seq.json)', async () => {
  const dir = await tempDir('sb-adseq-')
  const file = join(dir, AD_SEQ_FILE)
  const store = adSeqFile(file)
  expect(store.load()).toBeUndefined()
  const privateKey = await generateKeyPair('Ed25519')
  const seqs: bigint[] = []
  const start = async (now: number): Promise<Advertiser> => {
    const dht = {
      put: async function * (_key: Uint8Array, value: Uint8Array) {
        seqs.push(decodeCapacityAd(value).seq!)
        yield { name: 'PEER_RESPONSE', messageType: 'PUT_VALUE' }
      },
      provide: async function * () { yield { name: 'PEER_RESPONSE', messageType: 'ADD_PROVIDER' } },
      getMode: () => 'client' as const
    }
    const libp2p = { getMultiaddrs: () => [multiaddr('/ip4/127.0.0.1/tcp/4001')], getPeers: () => [{}] as any, addEventListener: () => {}, removeEventListener: () => {} } as any
    const advertiser = new Advertiser({ libp2p, dht, privateKey, logger: defaultLogger() }, {
      offer: () => ({ region: 'de', capacityMbps: 100, load: 0, pricePerGbMicro: 1n, allowedPorts: '443' }),
      seqStore: adSeqFile(file),
      localTestnet: true,
      now: () => now
    })
    advertisers.push(advertiser)
    await advertiser.start()
    return advertiser
  }
  // a clock two hours ahead signs its seq, and it is kept
  const ahead = Date.UTC(2026, 10, 28, 14)
  const first = await start(ahead)
  await waitFor(() => seqs.length === 1, { what: 'the first ad' })
  expect(seqs[0]).toBe(BigInt(ahead))
  expect(store.load()).toBe(BigInt(ahead))
  await first.stop({ signal: AbortSignal.timeout(100) })
  const kept = store.load()!
  expect(kept).toBe(seqs[seqs.length - 1])
  // the clock put right, a restart: the next seq is past the last, not the clock's
  const count = seqs.length
  await start(ahead - 2 * 3_600_000)
  await waitFor(() => seqs.length > count, { what: 'the ad after the restart' })
  expect(seqs[count]).toBe(kept + 1n)
  expect(seqs.every((s, i) => i === 0 || s > seqs[i - 1])).toBe(true)
  // a file that is not one is said so, not taken for no seq
  await writeFile(file, '{"seq": 12}\n')
  expect(() => adSeqFile(file).load()).toThrow(`${file}: "seq" is not a whole number in a string: 12`)
  // nor one too near an ad's largest seq to sign past it (an advertiser then logs it and takes the clock)
  await writeFile(file, '{"seq": "9223372036854775807"}\n')
  expect(() => adSeqFile(file).load()).toThrow(`${file}: "seq" 9223372036854775807 is past ${MAX_KEPT_SEQ}, too near the largest seq an ad takes (2^63 - 1) to sign more ads past it`)
})
