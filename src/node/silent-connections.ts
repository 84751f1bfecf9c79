/**
 * Ends connections the peer has gone silent on: a home line that dropped,
 * a relay host that died, a peer that hung. TCP keeps such a connection up,
 * and libp2p's connection monitor gives each ping a minute
 * (PING_TIMEOUT_FLOOR, see libp2p.ts: a ping may wait that long behind
 * tunnel data on a busy connection) before it ends one. Until then an exit
 * behind NAT whose relay died kept advertising the dead circuit, and
 * `status` listed peers long gone.
 *
 * Silence, not a slow ping, is the sign: every peer pings each of its
 * connections every 10 s (MONITOR_PING_INTERVAL) and answers ours, so a
 * live peer is heard from at least that often, however long its answers
 * queue, and a busy connection is heard from all the time. So the muxer
 * of every connection notes when bytes last came in (one clock read per
 * read from the socket), and a connection nothing came in on for
 * `silentAfterMs` (25 s: two ping rounds and a half) is aborted. The
 * monitor's minute stays as the backstop for connections without a clock
 * (a muxer other than yamux).
 *
 * A busy event loop must not look like silent peers: after a long stall
 * the timers run before the sockets are read, so a sweep that comes late
 * only moves the baseline, and judges nothing until the next.
 */

import { second } from '../constants.ts'
import type { ComponentLogger, Connection, Logger, Startable, StreamMuxer, StreamMuxerFactory } from '@libp2p/interface'

export const DEFAULT_SILENT_AFTER_MS = 25 * second
export const DEFAULT_SWEEP_INTERVAL_MS = 5 * second

/** When bytes last came in on a muxer (performance.now() ms), kept on the muxer itself: read on every sweep, written on every read. */
const HEARD = Symbol.for('spareband.lastHeard')
/** When the muxer was made (performance.now() ms): the connection's opening on the same clock as HEARD. */
const OPENED = Symbol.for('spareband.opened')

interface Heard { [HEARD]?: number, [OPENED]?: number }

/** When bytes last came in on `connection` (performance.now() ms); undefined for a connection whose muxer has no clock. */
export function lastHeard (connection: Connection): number | undefined {
  const muxer = (connection as unknown as { muxer?: Heard }).muxer
  return muxer?.[HEARD]
}

/** When `connection` opened (performance.now() ms, as lastHeard); undefined for a connection whose muxer has no clock. */
export function openedAt (connection: Connection): number | undefined {
  const muxer = (connection as unknown as { muxer?: Heard }).muxer
  return muxer?.[OPENED]
}

/** `factory` whose muxers note when bytes last came in (see above); a muxer without the expected `onData` is left as it is. */
export function withHearingClock<C> (factory: (components: C) => StreamMuxerFactory): (components: C) => StreamMuxerFactory {
  return components => {
    const inner = factory(components)
    const createStreamMuxer = (maConn: Parameters<StreamMuxerFactory['createStreamMuxer']>[0]): StreamMuxer => {
      const muxer = inner.createStreamMuxer(maConn) as StreamMuxer & Heard & { onData?: (buf: unknown) => void }
      const onData = muxer.onData
      if (typeof onData !== 'function') return muxer
      muxer[HEARD] = muxer[OPENED] = performance.now()
      // @libp2p/utils' AbstractStreamMuxer calls this.onData for every read from the connection
      muxer.onData = function (this: typeof muxer, buf: unknown): void {
        this[HEARD] = performance.now()
        onData.call(this, buf)
      }
      return muxer
    }
    return Object.assign(Object.create(inner), { createStreamMuxer })
  }
}

export interface SilentConnectionsInit {
  /** @default DEFAULT_SILENT_AFTER_MS */
  silentAfterMs?: number
  /** @default DEFAULT_SWEEP_INTERVAL_MS */
  sweepIntervalMs?: number
}

export interface SilentConnectionsComponents {
  connectionManager: { getConnections: () => Connection[] }
  logger: ComponentLogger
}

export class SilentPeerError extends Error {
  static name = 'SilentPeerError'
  constructor (message: string) {
    super(message)
    this.name = 'SilentPeerError'
  }
}

/**
 * When sweeps of connections for silence run, and since when silence
 * counts. A sweep that comes late (more than two intervals after the last)
 * means the event loop stalled: the timers run before the sockets are read,
 * so what peers sent meanwhile may wait unread, and silence counts only
 * from that sweep on.
 */
export class SweepClock {
  private last = 0
  /** Silence before this counts for nothing. */
  private baseline = 0

  constructor (private readonly intervalMs: number) {}

  start (now = performance.now()): void {
    this.last = this.baseline = now
  }

  /** Notes a sweep at `now`: false when it came late, and judges nothing. */
  onTime (now: number): boolean {
    const late = now - this.last > 2 * this.intervalMs
    this.last = now
    if (late) this.baseline = now
    return !late
  }

  /** How long a connection last heard from at `heard` has been silent at `now`, as far as the evidence goes. */
  silence (heard: number, now: number): number {
    return now - Math.max(heard, this.baseline)
  }
}

export class SilentConnections implements Startable {
  private readonly log: Logger
  private readonly silentAfterMs: number
  private readonly sweepIntervalMs: number
  private timer?: NodeJS.Timeout
  private readonly clock: SweepClock
  /** Connections ended for silence since start. */
  ended = 0

  constructor (private readonly components: SilentConnectionsComponents, init: SilentConnectionsInit = {}) {
    this.log = components.logger.forComponent('spareband:silent-connections')
    this.silentAfterMs = init.silentAfterMs ?? DEFAULT_SILENT_AFTER_MS
    this.sweepIntervalMs = init.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS
    this.clock = new SweepClock(this.sweepIntervalMs)
  }

  start (): void {
    this.clock.start()
    this.timer = setInterval(() => { this.sweep() }, this.sweepIntervalMs)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  sweep (now = performance.now()): void {
    if (!this.clock.onTime(now)) {
      this.log('sweep came late (a stalled event loop): silence is counted from now')
      return
    }
    for (const connection of this.components.connectionManager.getConnections()) {
      const heard = lastHeard(connection)
      if (heard == null || connection.status !== 'open') continue
      const silentMs = this.clock.silence(heard, now)
      if (silentMs < this.silentAfterMs) continue
      this.ended++
      this.log('nothing heard from %p for %d s on %a: ending the connection', connection.remotePeer, Math.round(silentMs / 1000), connection.remoteAddr)
      connection.abort(new SilentPeerError(`nothing heard from the peer for ${Math.round(silentMs / 1000)} s`))
    }
  }
}

export function silentConnections (init: SilentConnectionsInit = {}): (components: SilentConnectionsComponents) => SilentConnections {
  return components => new SilentConnections(components, init)
}
