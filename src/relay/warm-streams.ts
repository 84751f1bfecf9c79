/**
 * Tunnel streams opened ahead of need. Opening a libp2p stream costs a
 * multistream-select round trip plus a peer-store write on both ends, about
 * 2 ms on loopback and one network RTT on a real link; a tunnel that finds a
 * stream already negotiated starts with its request instead. After a tunnel
 * to an exit succeeds, this keeps up to `perExit` idle streams to it, on the
 * connection that already exists (it never dials), for as long as the exit
 * keeps being used.
 *
 * An idle stream has sent nothing: the exit waits for its request and
 * closes it quietly if it only ends (see `UnusedStreamError`).
 */

import { second } from '../constants.ts'
import { closeQuietly } from './tunnel-protocol.ts'
import type { Logger, PeerId, Stream } from '@libp2p/interface'

export const DEFAULT_WARM_PER_EXIT = 8
/** Well under the exit's wait for a first request (WARM_STREAM_WAIT_MS), so the consumer closes first. */
export const DEFAULT_WARM_MAX_IDLE_MS = 20 * second
/** An exit not used for this long gets no more warm streams. */
export const DEFAULT_WARM_KEEP_EXIT_MS = 60 * second

export interface WarmStreamsInit {
  /** Opens a tunnel stream on an existing connection; undefined when there is none. */
  open: (exit: PeerId) => Promise<Stream | undefined>
  /** True for a ready stream that should no longer be used, e.g. one on a relayed connection once a direct one exists. */
  stale?: (exit: PeerId, stream: Stream) => boolean
  log: Logger
  /** Idle streams kept per exit; 0 turns warming off. @default 8 */
  perExit?: number
  maxIdleMs?: number
  keepExitMs?: number
  now?: () => number
}

interface Warm { stream: Stream, timer: NodeJS.Timeout, onClose: () => void }

interface ExitPool {
  exit: PeerId
  ready: Warm[]
  opening: number
  lastUsed: number
}

export class WarmStreams {
  private readonly pools = new Map<string, ExitPool>()
  private readonly perExit: number
  private readonly maxIdleMs: number
  private readonly keepExitMs: number
  private readonly now: () => number
  private readonly lowWater: number
  private stopped = false
  /** Tunnels that started on a warm stream, and those that found none. */
  readonly stats = { hits: 0, misses: 0 }

  constructor (private readonly init: WarmStreamsInit) {
    this.perExit = Math.max(0, init.perExit ?? DEFAULT_WARM_PER_EXIT)
    this.maxIdleMs = init.maxIdleMs ?? DEFAULT_WARM_MAX_IDLE_MS
    this.keepExitMs = init.keepExitMs ?? DEFAULT_WARM_KEEP_EXIT_MS
    this.now = init.now ?? Date.now
    this.lowWater = Math.max(1, Math.floor(this.perExit / 4))
  }

  /** Idle streams ready now and being opened, over all exits. */
  counts (): { ready: number, opening: number } {
    let ready = 0
    let opening = 0
    for (const p of this.pools.values()) { ready += p.ready.length; opening += p.opening }
    return { ready, opening }
  }

  /** A ready, still open stream to `exit`, or undefined. The caller owns it from here. */
  take (exit: PeerId): Stream | undefined {
    if (this.perExit === 0) return undefined
    const pool = this.pools.get(exit.toString())
    while (pool != null && pool.ready.length > 0) {
      const w = pool.ready.shift()!
      this.release(w)
      // a stream the exit half-closed (or that turned stale) would otherwise
      // stay open at both ends until the connection goes
      if (!isUsable(w.stream) || this.init.stale?.(exit, w.stream) === true) {
        closeQuietly(w.stream)
        continue
      }
      this.stats.hits++
      return w.stream
    }
    this.stats.misses++
    return undefined
  }

  /** A tunnel to `exit` worked: keep streams ready for the next ones. */
  replenish (exit: PeerId): void {
    if (this.perExit === 0 || this.stopped) return
    const key = exit.toString()
    let pool = this.pools.get(key)
    if (pool == null) {
      pool = { exit, ready: [], opening: 0, lastUsed: 0 }
      this.pools.set(key, pool)
    }
    pool.lastUsed = this.now()
    this.fill(pool)
  }

  /** Ends the idle streams to `exit`, and forgets it until a tunnel through it works again (found gone). */
  forget (exit: PeerId, reason: Error): void {
    const pool = this.pools.get(exit.toString())
    if (pool == null) return
    this.pools.delete(exit.toString())
    this.drop(pool, reason)
  }

  /** Closes every idle stream (node stopping). */
  stop (): void {
    this.stopped = true
    for (const pool of this.pools.values()) this.drop(pool)
    this.pools.clear()
  }

  private fill (pool: ExitPool): void {
    // refill in batches, when few are left: streams negotiated together share
    // their round trips, and each batch disturbs running tunnels only once
    if (pool.ready.length + pool.opening >= this.lowWater) return
    while (!this.stopped && pool.ready.length + pool.opening < this.perExit) {
      pool.opening++
      this.init.open(pool.exit).then(stream => {
        pool.opening--
        if (stream == null) return
        if (this.stopped || this.pools.get(pool.exit.toString()) !== pool) { closeQuietly(stream); return }
        this.add(pool, stream)
      }, err => {
        pool.opening--
        this.init.log('could not warm a tunnel stream to %p: %s', pool.exit, err.message)
      })
    }
  }

  private add (pool: ExitPool, stream: Stream): void {
    const w: Warm = {
      stream,
      // idle too long: close it, and replace it only while the exit is still in use
      timer: setTimeout(() => {
        this.remove(pool, w)
        closeQuietly(stream)
        if (this.now() - pool.lastUsed < this.keepExitMs) this.fill(pool)
        else this.forgetIfIdle(pool)
      }, this.maxIdleMs),
      // the exit or the connection went away
      onClose: () => {
        this.remove(pool, w)
        this.forgetIfIdle(pool)
      }
    }
    w.timer.unref()
    stream.addEventListener('close', w.onClose, { once: true })
    pool.ready.push(w)
  }

  /** An exit not used for a while, with nothing ready or opening, leaves the map. */
  private forgetIfIdle (pool: ExitPool): void {
    if (pool.ready.length > 0 || pool.opening > 0 || this.now() - pool.lastUsed < this.keepExitMs) return
    if (this.pools.get(pool.exit.toString()) === pool) this.pools.delete(pool.exit.toString())
  }

  private remove (pool: ExitPool, w: Warm): void {
    const i = pool.ready.indexOf(w)
    if (i >= 0) pool.ready.splice(i, 1)
    this.release(w)
  }

  private release (w: Warm): void {
    clearTimeout(w.timer)
    w.stream.removeEventListener('close', w.onClose)
  }

  /** Ends a pool's idle streams: closed, or aborted with `reason` (an exit found gone, which would not answer a close). */
  private drop (pool: ExitPool, reason?: Error): void {
    for (const w of pool.ready.splice(0)) {
      this.release(w)
      if (reason == null) closeQuietly(w.stream)
      else w.stream.abort(reason)
    }
  }
}

function isUsable (stream: Stream): boolean {
  return stream.status === 'open' && stream.writeStatus === 'writable' && stream.readStatus === 'readable' && stream.remoteWriteStatus === 'writable'
}
