/**
 * Relays a circuit to an exit went silent through, dialled last for a
 * while.
 *
 * An exit behind NAT holds reservations on two relays by default
 * (network.relay_reservations), and its ad names a circuit through each.
 * When one relay dies without a word, the consumer finds the exit gone on
 * the circuit through it (exit-liveness.ts, about 8 s), ends that circuit
 * and dials the exit again. libp2p dials a peer's addresses one at a time,
 * 6 s each, and two circuits rank alike by its own order (both public,
 * relayed, certified, TCP), so the dead relay's circuit, the older one in
 * the peer store, was tried first: measured in namespaces, the exit was
 * carried again 14 s after the relay went silent rather than 8. So the
 * node's address order puts a circuit through a relay marked here after
 * the others, until a connection to that relay opens again or
 * `forgetAfterMs` passes.
 *
 * A relay is marked only when it did not answer a ping of its own while
 * the exit was checked (`answered`): when the exit is what went away (its
 * process, its line) and the relay answers, nothing is marked, and the
 * requests waiting on the exit move on to the next exit at once, rather
 * than ask it again through its other relay (which would wait out the
 * request's time: that relay still holds the dead exit's reservation).
 *
 * Only the order changes: a circuit through a marked relay is still
 * dialled when nothing else works (the relay the only one the exit has).
 */

import { circuitRelayAddressesLast, loopbackAddressLast, publicAddressesFirst, reliableTransportsFirst } from '@libp2p/utils'
import { relayOf } from '../routing/advertised-relays.ts'
import { minute } from '../constants.ts'
import { PeerMarks } from './peer-marks.ts'
import type { Address } from '@libp2p/interface'

export const DEFAULT_FORGET_AFTER_MS = 10 * minute
/** Relays held at most, marked and answered each; the one longest ago goes first. */
const MAX_HELD = 1000

export class SilentRelays extends PeerMarks {
  /** relay peer id -> when it was marked (ms since the epoch); in order of marking */
  private readonly marked = new Map<string, number>()
  /** relay peer id -> when it last answered a ping of ours */
  private readonly answers = new Map<string, number>()

  constructor (private readonly forgetAfterMs = DEFAULT_FORGET_AFTER_MS, private readonly now: () => number = Date.now) {
    super()
  }

  /** The relay answered a ping of ours: it is not silent. */
  answered (relay: string): void {
    this.marked.delete(relay)
    held(this.answers, relay, this.now())
  }

  /** Whether the relay answered a ping of ours at `since` (ms since the epoch, as `now`) or later. */
  answeredSince (relay: string, since: number): boolean {
    return (this.answers.get(relay) ?? -Infinity) >= since
  }

  /** The relay went silent: circuits through it are dialled last for a while. */
  mark (relay: string): void {
    held(this.marked, relay, this.now())
  }

  /** Read only (the sorter's comparator asks it): an expired mark stays in the map, which holds MAX_HELD at most. */
  isMarked (relay: string): boolean {
    const at = this.marked.get(relay)
    return at != null && this.now() - at < this.forgetAfterMs
  }

  /** libp2p's own order (its defaultAddressSorter), then circuits through marked relays after the other circuits. */
  readonly compare = (a: Address, b: Address): -1 | 0 | 1 => {
    return loopbackAddressLast(a.multiaddr, b.multiaddr) ||
      publicAddressesFirst(a.multiaddr, b.multiaddr) ||
      circuitRelayAddressesLast(a.multiaddr, b.multiaddr) ||
      this.markedRelaysLast(a, b) ||
      certifiedFirst(a, b) ||
      reliableTransportsFirst(a.multiaddr, b.multiaddr)
  }

  private markedRelaysLast (a: Address, b: Address): -1 | 0 | 1 {
    if (this.marked.size === 0) return 0
    const [ma, mb] = [a, b].map(x => { const relay = relayOf(x.multiaddr); return relay != null && this.isMarked(relay) })
    return ma === mb ? 0 : ma ? 1 : -1
  }

  /** A connection to a marked relay opened: it is there again. */
  protected lift (peer: string): void {
    this.marked.delete(peer)
  }

  protected clear (): void {
    this.marked.clear()
    this.answers.clear()
  }
}

function held (map: Map<string, number>, key: string, at: number): void {
  map.delete(key)
  map.set(key, at)
  if (map.size > MAX_HELD) map.delete(map.keys().next().value!)
}

function certifiedFirst (a: Address, b: Address): -1 | 0 | 1 {
  if (Boolean(a.isCertified) === Boolean(b.isCertified)) return 0
  return a.isCertified ? -1 : 1
}
