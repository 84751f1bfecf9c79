/**
 * The addresses an exit puts in its capacity ad, and those of an ad a
 * consumer dials: on the public network only reachable ones; in a local
 * testnet private ones too, loopback only when there is nothing else.
 * Nothing is dialled here.
 */

import { describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { defaultLogger } from '@libp2p/logger'
import { adAddresses } from '../../src/routing/ad-addresses.ts'
import { ExitDiscovery } from '../../src/routing/discovery.ts'
import { encodeCapacityAd, signCapacityAd } from '../../src/routing/capacity-ad.ts'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { PeerId } from '@libp2p/interface'

const RELAY = '12D3KooWEWfUCkesDhNoqscTZ4F36BUQ5kBU7n4ZjoLgTKDvbJzP'
const listeners = [
  '/ip4/127.0.0.1/tcp/4001',
  '/ip6/::1/tcp/4001',
  '/ip4/10.78.0.2/tcp/4001',
  '/ip4/192.168.1.20/udp/4001/webrtc-direct',
  '/ip4/169.254.3.4/tcp/4001',
  '/ip6/fd00::5/tcp/4001',
  '/ip4/8.8.4.4/tcp/4001',
  '/ip6/2a00:1450::1/tcp/4001',
  `/ip4/9.9.9.9/tcp/4001/p2p/${RELAY}/p2p-circuit`,
  `/ip4/10.77.0.1/tcp/4001/p2p/${RELAY}/p2p-circuit`,
  '/unix/%2Ftmp%2Fspareband.sock',
  '/memory/exit'
]
const strings = (list: Multiaddr[]): string[] => list.map(String)

describe('the addresses of a capacity ad', () => {
  it('on the public network: only those others can reach, a circuit by its relay\'s address', () => {
    expect(strings(adAddresses(listeners.map(a => multiaddr(a)), false))).toEqual([
      '/ip4/8.8.4.4/tcp/4001',
      '/ip6/2a00:1450::1/tcp/4001',
      `/ip4/9.9.9.9/tcp/4001/p2p/${RELAY}/p2p-circuit`
    ])
  })

  it('in a local testnet: private ones too, loopback ones only on a machine with nothing else', () => {
    expect(strings(adAddresses(listeners.map(a => multiaddr(a)), true))).toEqual(listeners.slice(2, 10))
    const oneMachine = ['/ip4/127.0.0.1/tcp/4001', '/ip4/127.0.0.1/tcp/4002/ws']
    expect(strings(adAddresses(oneMachine.map(a => multiaddr(a)), true))).toEqual(oneMachine)
    expect(strings(adAddresses([multiaddr('/dns4/localhost/tcp/1'), multiaddr('/ip4/10.0.0.1/tcp/1')], true))).toEqual(['/ip4/10.0.0.1/tcp/1'])
  })
})

describe('a consumer dials only the addresses of an ad that its network can reach', () => {
  const fetchWith = async (localTestnet: boolean): Promise<{ merged: string[], adHad: number }> => {
    const key = await generateKeyPair('Ed25519')
    const exit = peerIdFromPrivateKey(key)
    const ad = await signCapacityAd({ region: 'de', capacityMbps: 100, load: 0, pricePerGbMicro: 1, allowedPorts: '443', multiaddrs: listeners, seq: Date.now(), expiresAt: Date.now() + 3_600_000 }, key)
    const merged: string[] = []
    const discovery = new ExitDiscovery({
      libp2p: {
        peerId: peerIdFromPrivateKey(await generateKeyPair('Ed25519')),
        contentRouting: { get: async () => encodeCapacityAd(ad) } as any,
        peerStore: { merge: async (peer: PeerId, data: { multiaddrs?: Multiaddr[] }) => { if (peer.equals(exit)) merged.push(...strings(data.multiaddrs ?? [])); return {} as any } } as any
      },
      logger: defaultLogger()
    }, { localTestnet })
    const verified = await discovery.fetchAd(exit)
    return { merged, adHad: verified.multiaddrs.length }
  }

  it('on the public network, what an exit\'s ad names on private networks or loopback is not dialled', async () => {
    const { merged, adHad } = await fetchWith(false)
    expect(adHad).toBe(listeners.length)
    expect(merged).toEqual(['/ip4/8.8.4.4/tcp/4001', '/ip6/2a00:1450::1/tcp/4001', `/ip4/9.9.9.9/tcp/4001/p2p/${RELAY}/p2p-circuit`])
  })

  it('in a local testnet, the LAN addresses are dialled, not another machine\'s loopback', async () => {
    expect((await fetchWith(true)).merged).toEqual(listeners.slice(2, 10))
  })
})
