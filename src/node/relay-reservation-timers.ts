/**
 * The relay server ends a reservation when its timer fires, and each
 * refresh by the reserving peer resets that timer. The timer is a
 * retimeable-signal (1.0.1, the latest), whose reset() adds a listener that
 * a later reset() cannot remove: from a peer's second refresh on, the
 * timer the first refresh set still fires. The relay then dropped an exit's
 * reservation some minutes after its second refresh (about 3 h 55 min in,
 * with the 2 h lifetime) while the exit went on advertising the circuit
 * address, unreachable until its next refresh, and so again every cycle.
 *
 * So each new reservation's signal is swapped, as the store makes it, for
 * one whose reset() works; when it fires it removes that reservation, and
 * no newer one the peer holds by then.
 */

import type { PeerId } from '@libp2p/interface'

/** An AbortSignal that aborts `ms` after it is made or last reset; clear() stops it. */
export type ResettableSignal = AbortSignal & { reset: (ms?: number) => void, clear: () => void }

export function resettableTimeoutSignal (ms: number): ResettableSignal {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const arm = (after: number): void => {
    clearTimeout(timer)
    timer = setTimeout(() => { controller.abort(new DOMException('the reservation expired', 'TimeoutError')) }, after)
    // as AbortSignal.timeout: no process is kept up for it
    timer.unref()
  }
  arm(ms)
  return Object.assign(controller.signal, {
    reset: (after?: number): void => { if (!controller.signal.aborted) arm(after ?? ms) },
    clear: (): void => { clearTimeout(timer) }
  })
}

/** What of @libp2p/circuit-relay-v2's server ReservationStore this touches. */
export interface ServerReservationStore {
  reservationTtl: number
  reservations: {
    size: number
    get: (peer: PeerId) => { signal: AbortSignal & { clear?: () => void, reset?: (ms?: number) => void } } | undefined
    delete: (peer: PeerId) => unknown
    keys: () => Iterable<PeerId>
  }
  reserve: (peer: PeerId, ...rest: any[]) => unknown
}

export function fixReservationTimers (store: ServerReservationStore): void {
  const reserve = store.reserve.bind(store)
  store.reserve = (peer, ...rest) => {
    const before = store.reservations.get(peer)
    const result = reserve(peer, ...rest)
    const made = store.reservations.get(peer)
    if (made != null && made !== before) {
      // the store's own timer, unreset, still stops with clear(); its listener goes with it
      made.signal.clear?.()
      const signal = resettableTimeoutSignal(store.reservationTtl)
      signal.addEventListener('abort', () => { if (store.reservations.get(peer) === made) store.reservations.delete(peer) }, { once: true })
      made.signal = signal
    }
    return result
  }
}
