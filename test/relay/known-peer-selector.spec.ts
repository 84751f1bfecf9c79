import { describe, it, expect } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { KnownPeerSelector, formatAgent } from '../../src/relay/exit-selector.ts'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import type { PeerId } from '@libp2p/interface'

async function peer (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

/** A peer store entry as identify leaves it. */
function stored (id: PeerId, agent: string, protocols = [TUNNEL_PROTOCOL]): any {
  return { id, protocols, metadata: new Map([['AgentVersion', new TextEncoder().encode(agent)]]), addresses: [], tags: new Map() }
}

describe('KnownPeerSelector.liveRegion: what identify says of an exit connected now', () => {
  it('gives the region of a connected exit, and nothing for one not connected, not an exit, or of no region', async () => {
    const [self, moved, away, relay, bare] = await Promise.all([peer(), peer(), peer(), peer(), peer()])
    const peers = [stored(moved, formatAgent('1.0.0', 'fr', true)), stored(away, formatAgent('1.0.0', 'de', true)), stored(relay, formatAgent('1.0.0', 'de', false)), stored(bare, formatAgent('1.0.0', undefined, true))]
    const connected = new Set([moved, relay, bare].map(String))
    const known = new KnownPeerSelector({ peerId: self, peerStore: { all: async () => peers } as any, getConnections: ((id: PeerId) => connected.has(id.toString()) ? [{}] : []) as any })
    expect(await known.liveRegion(moved)).toBe('fr')
    expect(await known.liveRegion(away)).toBeUndefined()
    expect(await known.liveRegion(relay)).toBeUndefined()
    expect(await known.liveRegion(bare)).toBeUndefined()
  })
})
