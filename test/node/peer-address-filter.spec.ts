/**
 * On the public network a node keeps only other peers' public addresses,
 * whatever told it of them (src/node/peer-address-filter.ts); in a local
 * testnet it keeps them all. Real nodes on loopback: a peer that connects
 * names its loopback addresses in identify, and the node either stores
 * them or not.
 */

import { afterAll, describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { createSparebandNode } from '../../src/index.ts'
import { peerAddressFilter } from '../../src/node/peer-address-filter.ts'
import { AdvertisedRelays } from '../../src/routing/advertised-relays.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { Libp2p } from '@libp2p/interface'
import type { SparebandNode } from '../../src/index.ts'

const stops: Array<() => Promise<void>> = []
afterAll(async () => { for (const s of stops.reverse()) await s().catch(() => {}) })

describe('peerAddressFilter', () => {
  it('on the public network keeps public addresses, circuits through public relays and DNS names, and every address of the node itself', async () => {
    const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const keep = peerAddressFilter(self, { publicOnly: true })
    const kept = (peer: typeof self, a: string): boolean => keep(peer, multiaddr(a))
    expect(kept(other, '/ip4/11.77.1.5/tcp/4001')).toBe(true)
    expect(kept(other, '/ip4/11.77.1.5/tcp/4001/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE/p2p-circuit')).toBe(true)
    expect(kept(other, '/dns4/relay.example.net/tcp/4001')).toBe(true)
    expect(kept(other, '/ip6/2001:4860::1/tcp/4001')).toBe(true)
    for (const a of ['/ip4/127.0.0.1/tcp/4001', '/ip4/10.77.2.2/tcp/4001', '/ip4/192.168.1.5/udp/4001/webrtc-direct', '/ip4/100.64.0.1/tcp/1', '/ip6/::1/tcp/4001', '/ip6/fe80::1/tcp/4001', '/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE/p2p-circuit']) {
      expect(kept(other, a), a).toBe(false)
      expect(kept(self, a), a).toBe(true)
    }
    // in a local testnet: all
    expect(peerAddressFilter(self, { publicOnly: false })(other, multiaddr('/ip4/10.77.2.2/tcp/4001'))).toBe(true)
  })

  it('keeps no circuit of an exit through a relay its newest ad does not name, by the relay\'s peer id, until an ad names it again or expires', async () => {
    const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const exit = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const r1 = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
    const r2 = '12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE'
    let now = 1_000_000
    const relays = new AdvertisedRelays(() => now)
    const keep = peerAddressFilter(self, { publicOnly: true, advertisedRelays: relays })
    const kept = (peer: typeof self, a: string): boolean => keep(peer, multiaddr(a))
    const viaR1 = `/ip4/11.77.3.2/tcp/4001/p2p/${r1}/p2p-circuit`
    const viaR1Webrtc = `/ip4/11.77.3.2/udp/4001/webrtc-direct/p2p/${r1}/p2p-circuit`
    const viaR2 = `/ip4/11.77.1.5/tcp/4001/p2p/${r2}/p2p-circuit`
    // no ad known: any circuit
    expect(kept(exit, viaR1)).toBe(true)
    relays.set(exit, [multiaddr(viaR2), multiaddr('/ip4/11.77.9.9/tcp/4001')], now + 60_000)
    expect(kept(exit, viaR1)).toBe(false)
    expect(kept(exit, viaR1Webrtc)).toBe(false)
    expect(kept(exit, viaR2)).toBe(true)
    expect(kept(exit, `${viaR2}/p2p/${exit.toString()}`)).toBe(true)
    expect(kept(exit, '/ip4/11.77.9.10/tcp/4001')).toBe(true)
    // another peer's circuits are its own ad's matter
    expect(kept(other, viaR1)).toBe(true)
    // a newer ad names r1 again (any of its addresses)
    relays.set(exit, [multiaddr(viaR1Webrtc)], now + 60_000)
    expect(kept(exit, viaR1)).toBe(true)
    expect(kept(exit, viaR2)).toBe(false)
    // the ad expired: no say any more
    now += 60_000
    expect(kept(exit, viaR2)).toBe(true)
  })

  it('takes the relays an exit names in identify (its own word, newer than its ad) until the ad expires; a peer without an ad here is not its concern', async () => {
    const exit = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const self = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const r1 = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
    const r2 = '12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE'
    let now = 1_000_000
    const relays = new AdvertisedRelays(() => now)
    const keep = peerAddressFilter(self, { publicOnly: true, advertisedRelays: relays })
    const viaR1 = multiaddr(`/ip4/11.77.3.2/tcp/4001/p2p/${r1}/p2p-circuit`)
    const viaR2 = multiaddr(`/ip4/11.77.1.5/tcp/4001/p2p/${r2}/p2p-circuit`)
    expect(relays.identified(exit, [viaR1, viaR2])).toBeUndefined()
    // its ad names r1; it reserved on r2 since, and says so in identify
    relays.set(exit, [viaR1], now + 60_000, 5n)
    expect(keep(exit, viaR2)).toBe(false)
    expect(relays.identified(exit, [viaR1, viaR2])).toEqual([r2])
    expect(keep(exit, viaR2)).toBe(true)
    // r1 died and it left it: identify alone now
    expect(relays.identified(exit, [viaR2])).toEqual([])
    expect(keep(exit, viaR1)).toBe(false)
    // the same ad fetched again (a refetch before the exit republished) does not undo what identify said
    relays.set(exit, [viaR1], now + 60_000, 5n)
    expect([keep(exit, viaR1), keep(exit, viaR2)]).toEqual([false, true])
    // a newer ad is newer than identify
    relays.set(exit, [viaR1], now + 60_000, 6n)
    expect([keep(exit, viaR1), keep(exit, viaR2)]).toEqual([true, false])
    now += 60_000
    expect(relays.identified(exit, [viaR2])).toBeUndefined()
    expect(keep(exit, viaR1)).toBe(true)
  })
})

describe('a node keeps what identify says of a peer', () => {
  async function nodeOn (localTestnet: boolean): Promise<SparebandNode> {
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-addr-filter-'),
      config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { enabled: false }, exit: { enabled: false }, relay: { enabled: false }, accounting: { pow_difficulty: 8 }, network: localTestnet ? { local_testnet: true } : { name: 'not-a-testnet', local_testnet: false } }
    })
    stops.push(async () => { await node.stop() })
    await node.start()
    return node
  }

  /** A plain peer listening on loopback that connects to `node` and says where it listens. */
  async function peerOf (node: SparebandNode): Promise<Libp2p> {
    const peer = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify() } })
    stops.push(async () => { await peer.stop() })
    await peer.dial(multiaddr(node.status().addresses[0]))
    return peer
  }

  it('on the public network: none of its private addresses; its own stay listed', async () => {
    const node = await nodeOn(false)
    const peer = await peerOf(node)
    // identify has run once the peer's protocols are known
    await waitFor(async () => (await node.libp2p.peerStore.get(peer.peerId).catch(() => undefined))?.protocols.includes('/ipfs/id/1.0.0') === true, { what: 'identify of the peer' })
    expect((await node.libp2p.peerStore.get(peer.peerId)).addresses).toEqual([])
    // the node's own record (written a second after its listeners start) keeps its loopback address
    await waitFor(async () => (await node.libp2p.peerStore.get(node.libp2p.peerId)).addresses.some(a => a.multiaddr.toString().startsWith('/ip4/127.0.0.1/tcp/')), { what: 'the node\'s own loopback address in its record' })
  })

  it('in a local testnet: its loopback address, as identify gave it', async () => {
    const node = await nodeOn(true)
    const peer = await peerOf(node)
    const listening = peer.getMultiaddrs().map(a => a.decapsulate(`/p2p/${peer.peerId.toString()}`).toString())
    await waitFor(async () => ((await node.libp2p.peerStore.get(peer.peerId).catch(() => undefined))?.addresses ?? []).some(a => listening.includes(a.multiaddr.toString())), { what: 'the peer\'s listen address in the store' })
  })
})
