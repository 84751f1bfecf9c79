/**
 * Tells a relay that died from an exit that went away, when a consumer
 * finds an exit gone on a circuit (exit-liveness.ts), and says what to do
 * about each.
 *
 * While the exit is checked (pinged on the connection its waiting requests
 * use), the relay of each circuit we have to it is pinged too, over our own
 * connection to that relay, once per check. When the check finds the exit
 * gone:
 * - the connection it judged went through a relay that did not answer in
 *   this check: that relay died. Circuits through relays that did not
 *   answer are ended and their relays marked (SilentRelays: dialled last),
 *   circuits through relays that answered stay, and for a while the exit
 *   may be asked again by the requests that were waiting (`otherRoute`):
 *   through a circuit that stays, or a fresh dial through an unmarked relay;
 * - else (the relay answered, or the connection was direct) the exit went
 *   away itself: every quiet circuit to it is ended, relays that did not
 *   answer are marked all the same, and nothing asks it again, so the
 *   waiting requests move on to the next exit at once (asking it again
 *   through its other relay, which still holds its reservation, would wait
 *   out the request's time).
 * Only answers within the check count: a relay that answered a minute ago
 * and died since is silent now.
 */

import { peerIdFromString } from '@libp2p/peer-id'
import { relayOf } from '../routing/advertised-relays.ts'
import { connectionFor, pingOver } from './open-stream.ts'
import { lastHeard } from './silent-connections.ts'
import { second } from '../constants.ts'
import type { SilentRelays } from './silent-relays.ts'
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'

/** How long a relay's ping may take; its own time, not the exit ping's (which a failure ends early and tries again). */
export const RELAY_PING_MS = 5 * second
/** How long after a verdict that blamed a relay the requests that waited may ask the exit again: their response time. */
export const REROUTE_FOR_MS = 15 * second
/** A check lasts at most its ping's time (15 s for a silent tunnel's exit) and a grace: an older start is another check's. */
const MAX_CHECK_MS = 20 * second
/** Exits whose check is under way, or whose verdict blamed a relay, held at most. */
const MAX_EXITS = 10_000

interface Check { connection: Connection, since: number }

export class RelayFailover {
  private readonly checks = new Map<string, Check>()
  private readonly pinging = new Set<string>()
  /** exit -> when a verdict found it gone for a relay's silence */
  private readonly reroute = new Map<string, number>()

  constructor (
    private readonly libp2p: Pick<Libp2p, 'getConnections' | 'peerStore'>,
    private readonly relays: SilentRelays,
    private readonly now: () => number = Date.now,
    /** How a relay is pinged (libp2p's ping protocol; a test gives its own). */
    private readonly ping: (connection: Connection, options: { signal: AbortSignal }) => Promise<void> = pingOver
  ) {}

  /** A check pings `exit` over `connection` (the first ping of a check, or one tried again): the relays are pinged once per check. */
  checking (exit: PeerId, connection: Connection): void {
    const id = exit.toString()
    // a check that ended without a verdict here (its exit was heard from meanwhile) is no part of this one
    const earlier = this.checks.get(id)
    const since = earlier != null && this.now() - earlier.since < MAX_CHECK_MS ? earlier.since : this.now()
    this.checks.delete(id)
    this.checks.set(id, { connection, since })
    if (this.checks.size > MAX_EXITS) this.checks.delete(this.checks.keys().next().value!)
    for (const relay of new Set(this.libp2p.getConnections(exit).flatMap(c => relayOf(c.remoteAddr) ?? []))) {
      if (this.pinging.has(relay) || this.relays.answeredSince(relay, since)) continue
      const toRelay = connectionFor(this.libp2p, peerIdFromString(relay), false)
      if (toRelay == null) continue
      this.pinging.add(relay)
      this.ping(toRelay, { signal: AbortSignal.timeout(RELAY_PING_MS) })
        .then(() => { this.relays.answered(relay) }, () => {})
        .finally(() => { this.pinging.delete(relay) })
    }
  }

  /** The exit answered its check: nothing to decide. */
  answered (exit: PeerId): void {
    this.checks.delete(exit.toString())
  }

  /**
   * The exit was found gone: the circuits to end (of those quiet for
   * `quietMs`), after the relays that did not answer in this check were
   * marked.
   */
  gone (exit: PeerId, quietMs: number): Connection[] {
    const id = exit.toString()
    const check = this.checks.get(id)
    this.checks.delete(id)
    const since = check?.since ?? this.now()
    const now = performance.now()
    const silentRelay = (c: Connection): boolean => { const r = relayOf(c.remoteAddr); return r != null && !this.relays.answeredSince(r, since) }
    const quiet = this.libp2p.getConnections(exit).filter(c => relayOf(c.remoteAddr) != null && now - (lastHeard(c) ?? -Infinity) >= quietMs)
    const throughSilent = quiet.filter(silentRelay)
    for (const c of throughSilent) this.relays.mark(relayOf(c.remoteAddr)!)
    this.reroute.delete(id)
    // the exit itself
    if (check == null || !silentRelay(check.connection)) return quiet
    this.reroute.set(id, this.now())
    if (this.reroute.size > MAX_EXITS) this.reroute.delete(this.reroute.keys().next().value!)
    return throughSilent.includes(check.connection) ? throughSilent : [...throughSilent, check.connection]
  }

  /**
   * Whether a request that `exit` failed, found gone just now because a
   * relay died, may ask it again: a circuit to it through a relay that
   * answered is still open, or one through an unmarked relay is known.
   */
  async otherRoute (exit: PeerId): Promise<boolean> {
    const at = this.reroute.get(exit.toString())
    if (at == null || this.now() - at > REROUTE_FOR_MS) return false
    const open = this.libp2p.getConnections(exit).filter(c => c.status === 'open')
    // a direct connection: not what failed (a circuit did), and what a fresh dial would take
    if (open.some(c => relayOf(c.remoteAddr) == null)) return false
    const known = (await this.libp2p.peerStore.get(exit).catch(() => undefined))?.addresses.map(a => a.multiaddr) ?? []
    return [...open.map(c => c.remoteAddr), ...known].some(a => { const r = relayOf(a); return r != null && !this.relays.isMarked(r) })
  }
}
