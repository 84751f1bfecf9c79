/**
 * The circuit relay this node runs for others, and when it runs it.
 *
 * A relay is of use only at an address others can dial. A node behind NAT
 * that relays anyway is worse than none: its peers' relay search finds it
 * (over connections it dialled out), reserves on it, and then advertises
 * circuit addresses through it that nobody can reach. So with
 * `relay.enabled = "auto"` (the default) on the public network, the relay
 * runs only while the node has a public address: one it listens on or
 * announces, or one AutoNAT confirmed (an exit at home with a forwarded
 * port). That is kad-dht's own rule for its server mode (publicly dialable
 * = an address that is neither private nor a circuit), so a node is a DHT
 * server and a relay together or neither. Kubo runs its relay service on
 * the same condition.
 *
 * The relay of @libp2p/circuit-relay-v2 cannot start again once stopped
 * (stop() aborts a controller that start() does not renew), so each time
 * the node becomes public a new one is made; when the node stops being
 * public the running one is stopped, which ends its circuits. Relay v2 has
 * no message that ends a reservation, and a client drops one only when its
 * connection to the relay closes (or a refresh fails, when it also takes
 * the relay for invalid for good): so the connections of the peers that
 * held one are closed, and they find another relay at once.
 */

import { circuitRelayServer } from '@libp2p/circuit-relay-v2'
import { isPrivate } from '@libp2p/utils'
import { TypedEventEmitter } from 'main-event'
import { fixReservationTimers } from './relay-reservation-timers.ts'
import { isCircuit } from '../routing/ad-addresses.ts'
import type { ServerReservationStore } from './relay-reservation-timers.ts'
import type { CircuitRelayServerInit } from '@libp2p/circuit-relay-v2'
import type { ComponentLogger, Libp2pEvents, Logger, PeerId, PeerUpdate, Startable, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** What of the library's relay server the node uses. */
export interface RelayServer extends Startable {
  reservationStore: ServerReservationStore
}

export interface RelayServiceEvents {
  /** The relay started (true) or stopped (false) as the node's addresses changed; not sent for the node's own stop. */
  change: CustomEvent<boolean>
}

/** The node's relay service: always running, or while the node is public. */
export interface RelayService extends Startable, TypedEventTarget<RelayServiceEvents> {
  /** The relay running now, if one is. */
  readonly server: RelayServer | undefined
  /** Why the relay runs or not: 'on' (relay.enabled = true, or a local testnet), 'public' or 'no public address' (auto). */
  readonly reason: RelayServiceReason
}

export type RelayServiceReason = 'on' | 'public' | 'no public address'

interface RelayComponents {
  events: TypedEventTarget<Libp2pEvents>
  connectionManager: { closeConnections: (peer: PeerId) => Promise<void> }
  addressManager: { getAddresses: () => Multiaddr[] }
  logger: ComponentLogger
}

/** kad-dht's test for server mode: some address that is neither private nor a circuit. */
export function hasPublicAddress (addrs: readonly Multiaddr[]): boolean {
  return addrs.some(a => !isPrivate(a) && !isCircuit(a))
}

/** A library relay server whose reservations end on time (relay-reservation-timers.ts). */
function makeServer (components: unknown, init: CircuitRelayServerInit): RelayServer {
  const server = circuitRelayServer(init)(components as any) as unknown as RelayServer
  fixReservationTimers(server.reservationStore)
  return server
}

/** The relay service: `whilePublic` runs it only while the node has a public address. */
export function relayService (init: CircuitRelayServerInit, options: { whilePublic: boolean }): (components: RelayComponents) => RelayService {
  return components => options.whilePublic
    ? new PublicOnlyRelay(components, init)
    : new AlwaysOnRelay(makeServer(components, init))
}

class AlwaysOnRelay extends TypedEventEmitter<RelayServiceEvents> implements RelayService {
  readonly reason = 'on'
  constructor (readonly server: RelayServer) { super() }
  async start (): Promise<void> { await this.server.start() }
  async stop (): Promise<void> { await this.server.stop() }
}

class PublicOnlyRelay extends TypedEventEmitter<RelayServiceEvents> implements RelayService {
  server: RelayServer | undefined
  /** Between start() and stop(): the relay follows the address; a change is news (no part listens before start() ends). */
  private running = false
  /** Starts and stops in the order the address changes came. */
  private queue: Promise<void> = Promise.resolve()
  private readonly log: Logger

  constructor (private readonly components: RelayComponents, private readonly init: CircuitRelayServerInit) {
    super()
    this.log = components.logger.forComponent('spareband:relay-service')
    this.onSelfUpdate = this.onSelfUpdate.bind(this)
  }

  get reason (): RelayServiceReason { return this.server != null ? 'public' : 'no public address' }

  async start (): Promise<void> {
    this.running = true
    this.components.events.addEventListener('self:peer:update', this.onSelfUpdate)
    this.follow(hasPublicAddress(this.components.addressManager.getAddresses()))
    await this.queue
  }

  async stop (): Promise<void> {
    this.running = false
    this.components.events.removeEventListener('self:peer:update', this.onSelfUpdate)
    this.follow(false)
    await this.queue
  }

  private onSelfUpdate (evt: CustomEvent<PeerUpdate>): void {
    this.follow(hasPublicAddress(evt.detail.peer.addresses.map(a => a.multiaddr)))
  }

  private follow (isPublic: boolean): void {
    this.queue = this.queue.then(async () => {
      const want = isPublic && this.running
      if (want === (this.server != null)) return
      if (want) {
        const server = makeServer(this.components, this.init)
        await server.start()
        this.server = server
      } else {
        const server = this.server!
        this.server = undefined
        const reserved = [...server.reservationStore.reservations.keys()]
        await server.stop()
        // not for the node's own stop: its connections close anyway
        if (this.running) await Promise.all(reserved.map(async peer => { await this.components.connectionManager.closeConnections(peer).catch(() => {}) }))
      }
      // not for the node's own stop: only a change the operator should hear of
      if (this.running) this.safeDispatchEvent('change', { detail: want })
    }).catch(err => {
      // a start that failed leaves the relay off; the next address change tries again
      this.log.error('the relay could not %s - %e', isPublic ? 'start' : 'stop', err)
    })
  }
}
