/**
 * Wires the peer keeper (a libp2p service, see libp2p.ts) into a node: the
 * relays it listens through in `status` (`relays`), and its notices as node
 * events, which the CLI logs.
 */

import type { NodePart, SparebandNode } from './spareband-node.ts'
import type { PeerKeeper } from './peer-keeper.ts'

/**
 * `status().relaysFound`: the relays this node holds a reservation on that
 * it does not name (the relay search's); `relays` lists the named ones
 * only, so an exit behind NAT that named none looked reachable through
 * nothing (its relayed addresses were the only trace).
 */
export function foundRelaysPart (node: SparebandNode): NodePart | undefined {
  const keeper = node.libp2p.services.keeper as PeerKeeper | undefined
  if (keeper == null) return undefined
  return { name: 'relaysFound', status: () => keeper.foundRelays() }
}

export function keeperPart (node: SparebandNode): NodePart | undefined {
  const keeper = node.libp2p.services.keeper as PeerKeeper | undefined
  if (keeper == null) return undefined
  // named relays in an outage, and the network itself (no peer, no bootstrap peer answering), since
  // when: a warning in status while it lasts (the log says it once)
  const lost = new Map<string, number>()
  let cutOffSince: number | undefined
  keeper.addEventListener('keeper:lost', e => {
    if (e.detail.kind === 'relay') lost.set(e.detail.target, e.detail.since)
    else cutOffSince = e.detail.since
    node.safeDispatchEvent('keeper:lost', { detail: e.detail })
  })
  keeper.addEventListener('keeper:back', e => {
    if (e.detail.kind === 'relay') lost.delete(e.detail.target)
    else cutOffSince = undefined
    node.safeDispatchEvent('keeper:back', { detail: e.detail })
  })
  return {
    name: 'relays',
    status: () => keeper.relayStates(),
    warnings: () => [
      ...(cutOffSince == null ? [] : [`no peer since ${new Date(cutOffSince).toISOString()}: every connection is gone and no bootstrap peer answers, so this node finds no exit (NO_EXIT) and carries nothing; it redials them (the log says when it is back)`]),
      ...[...lost].map(([relay, since]) => `relay ${relay} is lost since ${new Date(since).toISOString()}: nobody reaches this node through it until a redial works (the log says when)`)
    ]
  }
}
