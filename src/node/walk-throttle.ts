/**
 * Paces js-libp2p's random walk when its queries come back at once.
 *
 * The relay transport's search (`/p2p-circuit`, in every node's default
 * listen addresses) walks the DHT for relays while it has fewer than it
 * wants, and libp2p's RandomWalk starts the next query the moment one ends.
 * When every peer the node knows is unreachable (its relays went away, or
 * the machine went offline) each query fails within a millisecond, and the
 * node spun at 55-66 % of a core, for as long as that lasted, dialling the
 * same dead peers thousands of times a second.
 *
 * A query that ends within FAST_QUERY_MS makes the next one wait, 1 s and
 * then twice as long each time, up to MAX_WAIT_MS; one that took longer (a
 * real lookup across the network) or a walk that starts after a quiet spell
 * starts at once. In a healthy network queries take longer than that, and
 * the walk runs as before.
 */

import { setTimeout as sleep } from 'node:timers/promises'
import { second, minute } from '../constants.ts'
import type { AbortOptions, PeerInfo } from '@libp2p/interface'

/** A query that ends sooner than this found nothing across the network. */
export const FAST_QUERY_MS = 1 * second
export const MIN_WAIT_MS = 1 * second
export const MAX_WAIT_MS = 1 * minute
/** A query this long after the last one ended belongs to a new walk: no wait. */
const NEW_WALK_AFTER_MS = 2 * MAX_WAIT_MS

type GetClosestPeers = (key: Uint8Array, options?: AbortOptions) => AsyncIterable<PeerInfo>

export interface WalkThrottleOptions {
  now?: () => number
  /** Waits `ms`, unless the signal aborts first. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
}

export class WalkThrottle {
  /** Queries started through this throttle (for tests and status). */
  queries = 0
  private wait = 0
  private lastEnd = -Infinity
  private readonly now: () => number
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>

  constructor (options: WalkThrottleOptions = {}) {
    this.now = options.now ?? Date.now
    this.sleep = options.sleep ?? abortableSleep
  }

  /** `getClosestPeers`, each query started no sooner than the pace allows. */
  wrap (getClosestPeers: GetClosestPeers): GetClosestPeers {
    const throttle = this
    return async function * (key, options) {
      if (throttle.now() - throttle.lastEnd > NEW_WALK_AFTER_MS) throttle.wait = 0
      const due = throttle.lastEnd + throttle.wait - throttle.now()
      if (due > 0) await throttle.sleep(due, options?.signal)
      options?.signal?.throwIfAborted()
      throttle.queries++
      const started = throttle.now()
      try {
        yield * getClosestPeers(key, options)
      } finally {
        const end = throttle.now()
        throttle.wait = end - started < FAST_QUERY_MS ? Math.min(MAX_WAIT_MS, Math.max(MIN_WAIT_MS, throttle.wait * 2)) : 0
        throttle.lastEnd = end
      }
    }
  }
}

/** Waits `ms`, or less if the signal aborts (the caller then throws). */
async function abortableSleep (ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => {})
}

/**
 * Puts a throttle between libp2p's RandomWalk and peer routing. RandomWalk
 * is internal to libp2p (`components.randomWalk`, which keeps the
 * `peerRouting` it was made with): if a libp2p upgrade moves it, nothing is
 * changed and the answer is undefined (the walk-throttle test then fails).
 */
export function throttleRandomWalk (libp2p: object, options?: WalkThrottleOptions): WalkThrottle | undefined {
  const walk = (libp2p as any).components?.randomWalk
  const routing = walk?.peerRouting
  if (typeof routing?.getClosestPeers !== 'function') return undefined
  const throttle = new WalkThrottle(options)
  const getClosestPeers = throttle.wrap(routing.getClosestPeers.bind(routing))
  // the walk's own view of peer routing; everyone else keeps the real one
  walk.peerRouting = new Proxy(routing, {
    get: (target, prop, receiver) => prop === 'getClosestPeers' ? getClosestPeers : Reflect.get(target, prop, receiver)
  })
  throttles.set(libp2p, throttle)
  return throttle
}

const throttles = new WeakMap<object, WalkThrottle>()

/** The throttle throttleRandomWalk() put on this libp2p node, if any. */
export function walkThrottleOf (libp2p: object): WalkThrottle | undefined {
  return throttles.get(libp2p)
}
