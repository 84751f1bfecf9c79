/**
 * A peer whose connection was ended because nothing came from it (its host
 * died, its line was cut: silent-connections.ts, relay-watch.ts) is not
 * dialled again for a while. Until now the node went straight back to it:
 * libp2p's relay search tries the relay it dialled last first, so an exit
 * whose relay died spent 6 s on a dial of the dead relay before it
 * reserved elsewhere; and every DHT query that met the dead peer waited
 * for kad-dht's timeout on it (5 s at least), the exit's publication of
 * its new circuit and a consumer's fetch of it among them.
 *
 * Only a peer the node was connected to directly (a relayed connection
 * goes silent with its relay, and the peer is reached through others), and
 * only when the node heard other peers lately: if nothing came in from
 * anyone, the silence is more likely the node's own line, and peers must
 * be dialled again the moment it is back. A connection the peer opens to
 * the node (it is there again) ends the pause at once.
 */

import { GONE_PEER_PAUSE_MS, second } from '../constants.ts'
import { lastHeard } from './silent-connections.ts'
import { relayOf } from '../routing/advertised-relays.ts'
import { PeerMarks } from './peer-marks.ts'
import type { Connection, PeerId } from '@libp2p/interface'

/**
 * The node's own line counts as working when another connection was heard
 * from within this at the verdict on a connection silent for 25 s
 * (silent-connections.ts). Every live peer answers the pings of libp2p's
 * connection monitor, sent every 10 s (libp2p.ts MONITOR_PING_INTERVAL):
 * on a working line some connection is heard from within that, idle or
 * not. On a line cut, nothing is heard after the cut, and the peer judged
 * had been heard within 10 s before it (it too answers every 10 s), so at
 * the verdict, 25 s after that, the others were last heard 15 s ago at the
 * least.
 */
export const HEARD_OTHERS_WITHIN_MS = 10 * second
const MAX_HELD = 1000

export class GonePeers extends PeerMarks {
  /** peer id -> until when (performance.now() ms) it is not dialled; in order of finding */
  private readonly paused = new Map<string, number>()

  constructor (private readonly pauseMs = GONE_PEER_PAUSE_MS) {
    super()
  }

  /**
   * `connection` was ended for silence at `now`: its peer is paused when
   * another of `connections` was heard from within `heardWithinMs` (the
   * node's line works). Not for a relayed connection: its relay may be what
   * went silent, and the peer is reached through others. Returns whether it
   * was paused.
   */
  found (connection: Connection, connections: readonly Connection[], now = performance.now(), heardWithinMs = HEARD_OTHERS_WITHIN_MS): boolean {
    if (relayOf(connection.remoteAddr) != null) return false
    const id = connection.remotePeer.toString()
    const othersHeard = connections.some(c => c.remotePeer.toString() !== id && now - (lastHeard(c) ?? -Infinity) < heardWithinMs)
    if (!othersHeard) return false
    this.paused.delete(id)
    this.paused.set(id, now + this.pauseMs)
    if (this.paused.size > MAX_HELD) this.paused.delete(this.paused.keys().next().value!)
    return true
  }

  isPaused (peer: PeerId, now = performance.now()): boolean {
    const id = peer.toString()
    const until = this.paused.get(id)
    if (until == null) return false
    if (now < until) return true
    this.paused.delete(id)
    return false
  }

  /** The connection gater's check: libp2p refuses the dial at once. */
  readonly denyDialPeer = (peer: PeerId): boolean => this.isPaused(peer)

  protected lift (peer: string): void {
    this.paused.delete(peer)
  }

  protected clear (): void {
    this.paused.clear()
  }
}
