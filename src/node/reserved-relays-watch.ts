/**
 * A node behind NAT is reached only through the relays it holds
 * reservations on. When such a relay's host dies without a word (power
 * lost, a line cut), TCP keeps the connection up, and the node found out
 * only when silent-connections.ts ended it, 25 s of silence later: that
 * long, and the time to reserve elsewhere and advertise it, an exit with
 * one reservation could not be reached at all (about 40 s in the
 * namespace test).
 *
 * These few connections are watched closer. One the relay has said nothing
 * on for `pingAfterMs` is pinged over that very connection (a live relay
 * answers in milliseconds, and a busy connection is heard from all the
 * time: data, window updates), and one nothing came in on for
 * `silentAfterMs` is ended. libp2p's relay transport then drops the
 * reservation and reserves on another relay, and the new circuit is
 * advertised. The relays are those in the node's own circuit addresses:
 * the node holds a reservation on each.
 *
 * A relay stalled that long is taken for gone: consumers judge an exit
 * behind it gone sooner (8 s, exit-liveness.ts), and a relay that comes
 * back is reserved on again like any other.
 */

import { SilentPeerError, SweepClock, lastHeard } from './silent-connections.ts'
import { pingOver } from './open-stream.ts'
import { relayOf } from '../routing/advertised-relays.ts'
import { second } from '../constants.ts'
import type { AbortOptions, ComponentLogger, Connection, Logger, Startable } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** A relay connection quiet this long is pinged. */
export const RESERVED_RELAY_PING_AFTER_MS = 3 * second
/** A relay connection nothing came in on for this long is ended. */
export const RESERVED_RELAY_SILENT_AFTER_MS = 10 * second
export const RESERVED_RELAY_SWEEP_INTERVAL_MS = second

export interface ReservedRelaysWatchInit {
  /** @default RESERVED_RELAY_PING_AFTER_MS */
  pingAfterMs?: number
  /** @default RESERVED_RELAY_SILENT_AFTER_MS */
  silentAfterMs?: number
  /** @default RESERVED_RELAY_SWEEP_INTERVAL_MS */
  sweepIntervalMs?: number
  /** How a relay is pinged (libp2p's ping protocol over the connection; a test gives its own). */
  ping?: (connection: Connection, options: AbortOptions) => Promise<void>
}

export interface ReservedRelaysWatchComponents {
  addressManager: { getAddresses: () => Multiaddr[] }
  connectionManager: { getConnections: () => Connection[] }
  logger: ComponentLogger
}

export class ReservedRelaysWatch implements Startable {
  private readonly log: Logger
  private readonly pingAfterMs: number
  private readonly silentAfterMs: number
  private readonly sweepIntervalMs: number
  private readonly ping: (connection: Connection, options: AbortOptions) => Promise<void>
  private readonly clock: SweepClock
  /** Connections (by id) with a ping under way: one at a time each. */
  private readonly pinging = new Set<string>()
  private stopping = new AbortController()
  private timer?: NodeJS.Timeout
  /** Relay connections ended for silence since start. */
  ended = 0

  constructor (private readonly components: ReservedRelaysWatchComponents, init: ReservedRelaysWatchInit = {}) {
    this.log = components.logger.forComponent('spareband:reserved-relays-watch')
    this.pingAfterMs = init.pingAfterMs ?? RESERVED_RELAY_PING_AFTER_MS
    this.silentAfterMs = init.silentAfterMs ?? RESERVED_RELAY_SILENT_AFTER_MS
    this.sweepIntervalMs = init.sweepIntervalMs ?? RESERVED_RELAY_SWEEP_INTERVAL_MS
    this.ping = init.ping ?? pingOver
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
    const relays = this.reservedRelays()
    if (relays.size === 0) return
    for (const connection of this.components.connectionManager.getConnections()) {
      // the reservation is held over a direct connection to the relay
      if (connection.status !== 'open' || connection.limits != null || !relays.has(connection.remotePeer.toString())) continue
      const heard = lastHeard(connection)
      if (heard == null) continue
      const silentMs = this.clock.silence(heard, now)
      if (silentMs >= this.silentAfterMs) {
        this.ended++
        this.log('nothing heard for %d s from %p, a relay this node is reached through: ending the connection, to reserve elsewhere', Math.round(silentMs / 1000), connection.remotePeer)
        connection.abort(new SilentPeerError(`nothing heard from the relay for ${Math.round(silentMs / 1000)} s`))
      } else if (silentMs >= this.pingAfterMs && !this.pinging.has(connection.id)) {
        this.pingQuiet(connection)
      }
    }
  }

  /** The answer, if any, is heard on the connection's clock; a failure says nothing the silence will not. */
  private pingQuiet (connection: Connection): void {
    this.pinging.add(connection.id)
    this.ping(connection, { signal: AbortSignal.any([AbortSignal.timeout(this.silentAfterMs), this.stopping.signal]) })
      .catch(err => { this.log('ping of relay %p failed - %e', connection.remotePeer, err) })
      .finally(() => { this.pinging.delete(connection.id) })
  }
}

export function reservedRelaysWatch (init: ReservedRelaysWatchInit = {}): (components: ReservedRelaysWatchComponents) => ReservedRelaysWatch {
  return components => new ReservedRelaysWatch(components, init)
}
