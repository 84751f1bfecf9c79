/**
 * A node behind NAT is reached only through the relays it holds
 * reservations on. When such a relay's host dies without a word (power
 * lost, a line cut), TCP keeps the connection up, and the node found out
 * only when silent-connections.ts ended it, 25 s of silence later: that
 * long, and the time to reserve elsewhere and advertise it, an exit with
 * one reservation could not be reached at all (about 40 s in the
 * namespace test).
 *
 * So the relays a node depends on are watched closer: those in its own
 * circuit addresses (it holds a reservation on each), and those a
 * consumer's failover check found silent (silent-relays.ts: its DHT
 * queries, which go on using the open connection, waited on the dead
 * relay until silent-connections.ts ended it). One that has said nothing
 * on a connection for `pingAfterMs` is pinged over that very connection (a
 * live relay answers in milliseconds, and a busy connection is heard from
 * all the time: data, window updates), and one nothing came in from for
 * `silentAfterMs` is ended: libp2p's relay transport then drops the
 * reservation and reserves on another relay, and the new circuit is
 * advertised. Shortly before that verdict another peer is pinged too: if
 * it answered, the node's own line works, and the relay is not dialled for
 * a while (gone-peers.ts).
 *
 * A relay stalled that long is taken for gone: consumers judge an exit
 * behind it gone sooner (8 s, exit-liveness.ts), and a relay that comes
 * back is reserved on again like any other.
 */

import { SilentPeerError, SweepClock, lastHeard } from './silent-connections.ts'
import { pingOver } from './open-stream.ts'
import { relayOf } from '../routing/advertised-relays.ts'
import type { GonePeers } from './gone-peers.ts'
import { second } from '../constants.ts'
import type { AbortOptions, ComponentLogger, Connection, Logger, Startable } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** A relay connection quiet this long is pinged. */
export const RELAY_WATCH_PING_AFTER_MS = 3 * second
/** A relay connection nothing came in on for this long is ended. */
export const RELAY_WATCH_SILENT_AFTER_MS = 10 * second
export const RELAY_WATCH_SWEEP_INTERVAL_MS = second
/**
 * This long before the verdict on a relay, another peer is pinged: its
 * answer, heard within RELAY_WATCH_HEARD_OTHERS_WITHIN_MS of the verdict,
 * shows that the node's own line works, and the relay is not dialled for a
 * while (gone-peers.ts). Idle peers alone are heard only every 10 s.
 */
export const RELAY_WATCH_CONTROL_LEAD_MS = 2 * second
export const RELAY_WATCH_HEARD_OTHERS_WITHIN_MS = 5 * second

export interface RelayWatchInit {
  /** @default RELAY_WATCH_PING_AFTER_MS */
  pingAfterMs?: number
  /** @default RELAY_WATCH_SILENT_AFTER_MS */
  silentAfterMs?: number
  /** @default RELAY_WATCH_SWEEP_INTERVAL_MS */
  sweepIntervalMs?: number
  /** How a relay is pinged (libp2p's ping protocol over the connection; a test gives its own). */
  ping?: (connection: Connection, options: AbortOptions) => Promise<void>
  /** Relays watched besides those the node holds a reservation on (those found silent). */
  alsoWatch?: (relay: string) => boolean
  /** Told of each relay ended for silence: it is not dialled for a while. */
  gonePeers?: Pick<GonePeers, 'found'>
}

export interface RelayWatchComponents {
  addressManager: { getAddresses: () => Multiaddr[] }
  connectionManager: { getConnections: () => Connection[] }
  logger: ComponentLogger
}

export class RelayWatch implements Startable {
  private readonly log: Logger
  private readonly pingAfterMs: number
  private readonly silentAfterMs: number
  private readonly sweepIntervalMs: number
  private readonly ping: (connection: Connection, options: AbortOptions) => Promise<void>
  private readonly alsoWatch?: (relay: string) => boolean
  private readonly gonePeers?: Pick<GonePeers, 'found'>
  private readonly clock: SweepClock
  /** Connections (by id) with a ping under way: one at a time each. */
  private readonly pinging = new Set<string>()
  /** Watched connections (by id) whose quiet stretch had its control ping (see RELAY_WATCH_CONTROL_LEAD_MS). */
  private readonly controlled = new Set<string>()
  private stopping = new AbortController()
  private timer?: NodeJS.Timeout
  /** Relay connections ended for silence since start. */
  ended = 0

  constructor (private readonly components: RelayWatchComponents, init: RelayWatchInit = {}) {
    this.log = components.logger.forComponent('spareband:relay-watch')
    this.pingAfterMs = init.pingAfterMs ?? RELAY_WATCH_PING_AFTER_MS
    this.silentAfterMs = init.silentAfterMs ?? RELAY_WATCH_SILENT_AFTER_MS
    this.sweepIntervalMs = init.sweepIntervalMs ?? RELAY_WATCH_SWEEP_INTERVAL_MS
    this.ping = init.ping ?? pingOver
    this.alsoWatch = init.alsoWatch
    this.gonePeers = init.gonePeers
    this.clock = new SweepClock(this.sweepIntervalMs)
  }

  start (): void {
    this.stopping = new AbortController()
    this.clock.start()
    this.timer = setInterval(() => { this.sweep() }, this.sweepIntervalMs)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.stopping.abort()
  }

  /** The relays this node holds a reservation on: those of its own circuit addresses. */
  private reservedRelays (): Set<string> {
    const relays = new Set<string>()
    for (const addr of this.components.addressManager.getAddresses()) {
      const relay = relayOf(addr)
      if (relay != null) relays.add(relay)
    }
    return relays
  }

  sweep (now = performance.now()): void {
    if (!this.clock.onTime(now)) {
      this.log('sweep came late (a stalled event loop): silence is counted from now')
      return
    }
    const reserved = this.reservedRelays()
    if (reserved.size === 0 && this.alsoWatch == null) return
    const connections = this.components.connectionManager.getConnections()
    const watched = new Set<string>()
    for (const connection of connections) {
      // a relay is watched over its direct connections: the reservation is held over one, DHT queries use them
      if (connection.status !== 'open' || connection.limits != null || relayOf(connection.remoteAddr) != null) continue
      const peer = connection.remotePeer.toString()
      if (!reserved.has(peer) && this.alsoWatch?.(peer) !== true) continue
      const heard = lastHeard(connection)
      if (heard == null) continue
      watched.add(connection.id)
      const silentMs = this.clock.silence(heard, now)
      if (silentMs >= this.silentAfterMs) {
        this.ended++
        const paused = this.gonePeers?.found(connection, connections, now, RELAY_WATCH_HEARD_OTHERS_WITHIN_MS) === true
        this.log('nothing heard for %d s from relay %p (%s): ending the connection%s', Math.round(silentMs / 1000), connection.remotePeer, reserved.has(peer) ? 'this node is reached through it' : 'found silent', paused ? ', not dialled for a while' : '')
        connection.abort(new SilentPeerError(`nothing heard from the relay for ${Math.round(silentMs / 1000)} s`))
        continue
      }
      if (silentMs < this.pingAfterMs) {
        this.controlled.delete(connection.id)
        continue
      }
      this.pingOnce(connection)
      if (silentMs >= this.silentAfterMs - RELAY_WATCH_CONTROL_LEAD_MS && !this.controlled.has(connection.id)) {
        this.controlled.add(connection.id)
        const control = mostRecentlyHeard(connections, connection.remotePeer.toString())
        if (control != null) this.pingOnce(control)
      }
    }
    for (const id of this.controlled) if (!watched.has(id)) this.controlled.delete(id)
  }

  /** One ping at a time on a connection. The answer, if any, is heard on its clock; a failure says nothing the silence will not. */
  private pingOnce (connection: Connection): void {
    if (this.pinging.has(connection.id)) return
    this.pinging.add(connection.id)
    this.ping(connection, { signal: AbortSignal.any([AbortSignal.timeout(this.silentAfterMs), this.stopping.signal]) })
      .catch(err => { this.log('ping of %p failed - %e', connection.remotePeer, err) })
      .finally(() => { this.pinging.delete(connection.id) })
  }
}

/** The open direct connection to a peer other than `not` heard from last: the likeliest to answer at once. */
function mostRecentlyHeard (connections: readonly Connection[], not: string): Connection | undefined {
  let best: Connection | undefined
  let bestHeard = -Infinity
  for (const c of connections) {
    const heard = lastHeard(c)
    if (heard == null || c.status !== 'open' || c.limits != null || c.remotePeer.toString() === not || heard <= bestHeard) continue
    best = c
    bestHeard = heard
  }
  return best
}

export function relayWatch (init: RelayWatchInit = {}): (components: RelayWatchComponents) => RelayWatch {
  return components => new RelayWatch(components, init)
}
