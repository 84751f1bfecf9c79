/**
 * The address of a relay whose connection the relay watch ended for
 * silence (its host died, its line was cut: relay-watch.ts) is not dialled
 * again for a while. Until then the node went straight back to it:
 * libp2p's relay search tries the relay it dialled last first, so an exit
 * whose relay died spent 6 s on a dial of the dead relay before it
 * reserved elsewhere; and every DHT query that met the dead relay waited
 * for kad-dht's timeout on it (5 s at least), the exit's publication of
 * its new circuit and a consumer's fetch of it among them.
 *
 * The address, not the peer: the relay may be reached at others (IPv4
 * when IPv6 broke, a new address). The watch decides when the node's own
 * line is to blame instead, and pauses nothing then. A connection the
 * relay opens to the node (it is there again) ends its pauses at once,
 * and both clocks must agree a pause still runs: performance.now() stops
 * while the machine sleeps.
 */

import { GONE_PEER_PAUSE_MS } from '../constants.ts'
import { PeerMarks } from './peer-marks.ts'
import type { Connection } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const MAX_HELD = 1000

interface Pause {
  peer: string
  /** performance.now() ms */
  until: number
  /** Date.now() ms */
  untilWall: number
}

/** The part of an address that is dialled: without its trailing /p2p/<peer id>. */
export function dialledPart (addr: Multiaddr): string {
  const text = addr.toString()
  const at = text.lastIndexOf('/p2p/')
  // a circuit (/p2p/<relay>/p2p-circuit/p2p/<peer>) keeps its relay part
  return at > 0 && !text.slice(at + 5).includes('/') ? text.slice(0, at) : text
}

export class GonePeers extends PeerMarks {
  /** dialled part of an address -> its pause; in order of pausing */
  private readonly paused = new Map<string, Pause>()

  constructor (private readonly pauseMs = GONE_PEER_PAUSE_MS) {
    super()
  }

  /** `peer`'s address `addr` is not dialled for the pause. */
  pause (peer: string, addr: Multiaddr, now = performance.now(), wallNow = Date.now()): void {
    const key = dialledPart(addr)
    this.paused.delete(key)
    this.paused.set(key, { peer, until: now + this.pauseMs, untilWall: wallNow + this.pauseMs })
    if (this.paused.size > MAX_HELD) this.paused.delete(this.paused.keys().next().value!)
  }

  /** How long until `addr` may be dialled again: 0 when it may be now. */
  pausedFor (addr: Multiaddr, now = performance.now(), wallNow = Date.now()): number {
    const key = dialledPart(addr)
    const p = this.paused.get(key)
    if (p == null) return 0
    const left = Math.min(p.until - now, p.untilWall - wallNow)
    if (left > 0) return left
    this.paused.delete(key)
    return 0
  }

  /** How long until the longest of `peer`'s pauses ends: 0 when it has none. For an address given by name, which the pause knows by the IP dialled. */
  pausedForPeer (peer: string, now = performance.now(), wallNow = Date.now()): number {
    let longest = 0
    for (const p of this.paused.values()) if (p.peer === peer) longest = Math.max(longest, Math.min(p.until - now, p.untilWall - wallNow))
    return longest
  }

  /** The connection gater's check: libp2p dials the peer's other addresses, or fails at once. */
  readonly denyDialMultiaddr = (addr: Multiaddr): boolean => this.pausedFor(addr) > 0

  /** A connection the relay opened to the node: it is there again. (One the node opened was to an address not paused.) */
  protected lift (peer: string, connection: Connection): void {
    if (this.paused.size === 0 || connection.direction !== 'inbound') return
    for (const [key, p] of this.paused) if (p.peer === peer) this.paused.delete(key)
  }

  protected clear (): void {
    this.paused.clear()
  }
}
