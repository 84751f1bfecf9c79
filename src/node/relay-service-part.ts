/**
 * The circuit relay this node runs for others (every node with a public
 * address relays, unless `relay.enabled = false`;
 * src/node/public-relay-server.ts): in status, whether it runs and why,
 * how many peers hold a reservation on it and how many circuits run
 * through it now (a relay's operator could not tell from status whether it
 * relayed anything at all), and reservations dropped with their peer's
 * last connection.
 */

import { RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2'
import type { RelayService, RelayServiceReason } from './public-relay-server.ts'
import type { NodePart, SparebandNode } from './spareband-node.ts'
import type { PeerId } from '@libp2p/interface'

// a circuit through this relay is an inbound stream of the hop protocol, open while the circuit is (a reservation's closes once made)

export interface RelayServiceStatus {
  /** Whether the relay runs now: with relay.enabled = "auto" outside a local testnet, only while the node has a public address. */
  running: boolean
  /** Why: "on" (relay.enabled = true, or a local testnet), "public" or "no public address" (auto). */
  reason: RelayServiceReason
  /** Peers holding a reservation on this relay: reachable through it. */
  reservations: number
  /** Circuits through this relay open now: relayed connections between two peers, each carrying all their streams (tunnels among them). */
  circuits: number
}

export function relayServicePart (node: SparebandNode): NodePart | undefined {
  const service = node.libp2p.services.relay as RelayService | undefined
  if (service == null) return undefined
  // a reservation is worth nothing once its peer is gone (the relay reaches a
  // peer only over the connection it reserved on), but js-libp2p keeps it
  // for its 2 h lifetime: 32 throw-away identities that reserved and left
  // filled the relay for everyone else for that long. It is ended through
  // its own timer, set to run out now, which removes that reservation and
  // no newer one (a bare delete left libp2p's timer to remove, at the old
  // reservation's end, the one an exit back from a blip had made since)
  const onDisconnect = (e: CustomEvent<PeerId>): void => { service.server?.reservationStore.reservations.get(e.detail)?.signal.reset?.(0) }
  const onChange = (e: CustomEvent<boolean>): void => { node.safeDispatchEvent('relay:service', { detail: { running: e.detail, reason: service.reason } }) }
  return {
    name: 'relayService',
    start: async () => {
      node.libp2p.addEventListener('peer:disconnect', onDisconnect)
      service.addEventListener('change', onChange)
    },
    stop: async () => {
      node.libp2p.removeEventListener('peer:disconnect', onDisconnect)
      service.removeEventListener('change', onChange)
    },
    status: (): RelayServiceStatus => ({
      running: service.server != null,
      reason: service.reason,
      reservations: service.server?.reservationStore.reservations.size ?? 0,
      circuits: node.libp2p.getConnections().reduce((n, c) => n + c.streams.filter(s => s.protocol === RELAY_V2_HOP_CODEC && s.direction === 'inbound').length, 0)
    })
  }
}
