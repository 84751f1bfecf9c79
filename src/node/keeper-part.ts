/**
 * Wires the peer keeper (a libp2p service, see libp2p.ts) into a node: the
 * relays it listens through in `status` (`relays`), and its notices as node
 * events, which the CLI logs.
 */

import type { NodePart, SparebandNode } from './spareband-node.ts'
import type { PeerKeeper } from './peer-keeper.ts'

export function keeperPart (node: SparebandNode): NodePart | undefined {
  const keeper = node.libp2p.services.keeper as PeerKeeper | undefined
  if (keeper == null) return undefined
  keeper.addEventListener('keeper:lost', e => node.safeDispatchEvent('keeper:lost', { detail: e.detail }))
  keeper.addEventListener('keeper:back', e => node.safeDispatchEvent('keeper:back', { detail: e.detail }))
  return {
    name: 'relays',
    status: () => keeper.relayStates()
  }
}
