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
  // named relays in an outage, since when: a warning in status while it lasts (the log says it once)
  const lost = new Map<string, number>()
  keeper.addEventListener('keeper:lost', e => {
    if (e.detail.kind === 'relay') lost.set(e.detail.target, e.detail.since)
    node.safeDispatchEvent('keeper:lost', { detail: e.detail })
  })
  keeper.addEventListener('keeper:back', e => {
    if (e.detail.kind === 'relay') lost.delete(e.detail.target)
    node.safeDispatchEvent('keeper:back', { detail: e.detail })
  })
  return {
    name: 'relays',
    status: () => keeper.relayStates(),
    warnings: () => [...lost].map(([relay, since]) => `relay ${relay} is lost since ${new Date(since).toISOString()}: nobody reaches this node through it until a redial works (the log says when)`)
  }
}
