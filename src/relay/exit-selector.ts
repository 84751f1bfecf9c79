/**
 * Which exits a consumer tries for a request, best first. This default
 * picks among peers it already knows (identify told us they speak the
 * tunnel protocol and which region they exit in); the routing area replaces
 * it with DHT discovery and learned scores behind the same interface.
 */

import { createHash } from 'node:crypto'
import { TUNNEL_PROTOCOL } from '../constants.ts'
import { regionMatches } from '../routing/regions.ts'
import { TunnelStatus } from './tunnel-protocol.ts'
import type { Libp2p, Peer, PeerId } from '@libp2p/interface'

export interface ExitRequest {
  region?: string
  sessionId?: string
}

export interface ExitOutcome {
  ok: boolean
  /** Tunnel status or dial error name when not ok. */
  status?: string
  /** Time from request to OK. */
  setupMs?: number
}

export interface ExitSelector {
  /** Candidate exits for a request, best first. */
  candidates (request: ExitRequest): Promise<PeerId[]>
  /** Telemetry: what happened when a tunnel through `exit` was tried. */
  report (exit: PeerId, request: ExitRequest, outcome: ExitOutcome): void
  /** Telemetry: a finished tunnel's bytes and timings. */
  reportTransfer? (exit: PeerId, transfer: TransferSample): void
  /** A tunnel through `exit` is being set up, or is open: counted until the returned function is called (once is enough; more are ignored). */
  opened? (exit: PeerId): () => void
  /**
   * `exit` could not be reached (a dial failed, or it was found gone): the
   * addresses this node has for it may be stale, as when it moved to another
   * relay, so its newest ad is worth fetching again.
   */
  unreachable? (exit: PeerId): void
}

export interface TransferSample {
  /** Bytes both ways. */
  bytes: number
  /** From the first to the last byte the exit sent. */
  durationMs: number
  /** From the tunnel request to the first byte back. */
  ttfbMs?: number
}

/** Matches the region an exit states in its identify agent string: `spareband/0.1.0 (region=de; exit)`. */
export function parseAgent (agent: string | undefined): { region?: string, exit: boolean } {
  if (agent == null || !agent.startsWith('spareband/')) return { exit: false }
  const m = /\(([^)]*)\)/.exec(agent)
  const parts = (m?.[1] ?? '').split(';').map(s => s.trim())
  const region = parts.find(p => p.startsWith('region='))?.slice('region='.length)
  return { region: region === '' ? undefined : region, exit: parts.includes('exit') }
}

export function formatAgent (version: string, region: string | undefined, exit: boolean): string {
  const parts = [...(region != null ? [`region=${region}`] : []), ...(exit ? ['exit'] : [])]
  return parts.length === 0 ? `spareband/${version}` : `spareband/${version} (${parts.join('; ')})`
}

/**
 * Failures that speak of the target or of "not now", not of the exit: a
 * session keeps its exit through them. (TIMEOUT here is the exit's answer,
 * its connect to the target timing out; an exit that does not answer at
 * all is reported as tunnel-client's NO_ANSWER.) A scraper meets dead hosts and
 * closed ports all the time; that is no reason to give it another address
 * mid-session (another exit would only say the same, see tunnel-client.ts).
 */
const KEEPS_SESSION_EXIT = new Set<string>([
  TunnelStatus.RATE_LIMITED, TunnelStatus.POLICY_DENIED, TunnelStatus.DNS_FAILED,
  TunnelStatus.CONNECT_REFUSED, TunnelStatus.UNREACHABLE, TunnelStatus.TIMEOUT, TunnelStatus.BAD_REQUEST
])

/**
 * Session stickiness: the same exit for the same session id while it keeps
 * working. At most `maxEntries` sessions are held, and the one used least
 * recently goes first: a scraper that mints a session id per request must
 * not push out the long-lived session it also runs.
 */
export class StickySessions {
  /** In order of last use, least recent first (a Map keeps insertion order). */
  private readonly bySession = new Map<string, string>()
  constructor (private readonly maxEntries = 10_000) {}

  key (r: ExitRequest): string | undefined {
    return r.sessionId == null ? undefined : `${r.region ?? '*'}/${r.sessionId}`
  }

  get (r: ExitRequest): string | undefined {
    const k = this.key(r)
    if (k == null) return undefined
    const exit = this.bySession.get(k)
    if (exit != null) this.touch(k, exit)
    return exit
  }

  get size (): number {
    return this.bySession.size
  }

  /**
   * `ordered` (best first) with the session's exit moved to the front. A
   * session with no exit among them is bound to one now, before its tunnel
   * is up: the requests a scraper starts together with a new session id
   * then all go to that exit. (Bound only once a tunnel was up, each of
   * them went to its own pick, and the session to whichever answered
   * last.) Given `scoreOf`, that exit is drawn among the good ones (see
   * firstPick), so new sessions spread over them rather than all take the
   * best one; without it, the best.
   */
  arrange<T> (r: ExitRequest, ordered: T[], idOf: (candidate: T) => string, scoreOf?: (candidate: T) => number): T[] {
    const k = this.key(r)
    if (k == null || ordered.length === 0) return ordered
    const exit = this.bySession.get(k)
    const i = exit == null ? -1 : ordered.findIndex(c => idOf(c) === exit)
    if (i < 0) {
      const pick = scoreOf == null ? 0 : firstPick(k, ordered, idOf, scoreOf)
      if (pick > 0) ordered.unshift(...ordered.splice(pick, 1))
      this.bind(k, idOf(ordered[0]))
      return ordered
    }
    this.touch(k, exit!)
    if (i > 0) ordered.unshift(...ordered.splice(i, 1))
    return ordered
  }

  private touch (k: string, exit: string): void {
    this.bySession.delete(k)
    this.bySession.set(k, exit)
  }

  private bind (k: string, exit: string): void {
    if (!this.bySession.has(k) && this.bySession.size >= this.maxEntries) {
      this.bySession.delete(this.bySession.keys().next().value!)
    }
    this.touch(k, exit)
  }

  /**
   * What a tunnel through `exit` for `r` came to. A failure of the exit
   * ends the session's hold on it; RATE_LIMITED (the exit is up and says
   * "not now") and the target's failures (see KEEPS_SESSION_EXIT) do not.
   * A success binds a session that has no exit; one bound to another exit
   * meanwhile (a request of the session that came together with this one
   * moved on from a failed exit first) stays where it is.
   */
  record (r: ExitRequest, exit: string, ok: boolean, status?: string): void {
    const k = this.key(r)
    if (k == null) return
    const bound = this.bySession.get(k)
    if (!ok) {
      if ((status == null || !KEEPS_SESSION_EXIT.has(status)) && bound === exit) this.bySession.delete(k)
      return
    }
    if (bound == null || bound === exit) this.bind(k, exit)
  }
}

/** How many of the best-ranked exits a new session is drawn among. */
export const SESSION_PICK_AMONG = 16

/**
 * The exit a new session starts on: drawn among the best-ranked exits
 * whose score is at least half the best's, each with a chance in
 * proportion to its score, by weighted rendezvous hashing of the session
 * key and the exit's id. A data team that opens a session per job for an
 * address of its own got the region's best exit nine times in ten (27 of
 * 30 new sessions in a row in a two-exit testnet); now sessions spread
 * over the good exits. The same session key draws the same exit from the
 * same candidates, so a consumer that forgot the session (a restart, the
 * table full) may well come back to it. A score that is NaN (or not above
 * 0) leaves that exit out of the draw. Returns an index into `ordered`;
 * 0 when no exit can be drawn.
 */
export function firstPick<T> (sessionKey: string, ordered: T[], idOf: (candidate: T) => string, scoreOf: (candidate: T) => number): number {
  const among = Math.min(ordered.length, SESSION_PICK_AMONG)
  const scores = ordered.slice(0, among).map(scoreOf)
  // the best in the window, not ordered[0]'s: a score that is NaN (an exit left out of the draw) counts for none
  const best = Math.max(...scores.filter(x => x > 0), 0)
  if (best === 0) return 0
  let pick = 0
  let lowest = Infinity
  for (let i = 0; i < among; i++) {
    const score = scores[i]
    if (!(score >= best / 2)) continue
    // -ln(u) / w is exponential with rate w: the lowest wins with probability w / (sum of w)
    const drawn = -Math.log(uniformOf(`${sessionKey}\0${idOf(ordered[i])}`)) / score
    if (drawn < lowest) {
      lowest = drawn
      pick = i
    }
  }
  return pick
}

/** A number in (0, 1), the same for the same text. */
function uniformOf (text: string): number {
  const h = createHash('sha256').update(text).digest()
  return (h.readUIntBE(0, 6) + 1) / (2 ** 48 + 2)
}

/** What identify told us of a peer that exits. */
interface KnownExit { id: PeerId, region?: string }

/** How often the index is rebuilt from the whole peer store, in case a peer left it. */
const KNOWN_EXITS_REFRESH_MS = 30_000

export class KnownPeerSelector implements ExitSelector {
  private readonly sticky = new StickySessions()
  /** Exits by peer id, kept current from `peer:update` events rather than scanning the peer store per tunnel. */
  private index?: Map<string, KnownExit>
  private indexedAt = 0
  private refreshing?: Promise<Map<string, KnownExit>>
  private updatedDuringRefresh?: Peer[]

  constructor (private readonly libp2p: Pick<Libp2p, 'peerId' | 'peerStore' | 'getConnections'> & Partial<Pick<Libp2p, 'addEventListener'>>, private readonly random: () => number = Math.random) {
    libp2p.addEventListener?.('peer:update', evt => {
      if (this.index != null) this.indexPeer(this.index, evt.detail.peer)
      // an update during a rebuild may be missing from its snapshot
      this.updatedDuringRefresh?.push(evt.detail.peer)
    })
  }

  /**
   * The region a connected exit's identify gives now, when it is connected
   * and gave one: fresher than a capacity ad cached from the DHT, so an exit
   * restarted in another region is not asked for its old one (requests for
   * it went on for a minute, until the cache was looked up again).
   */
  async liveRegion (id: PeerId): Promise<string | undefined> {
    if (this.libp2p.getConnections(id).length === 0) return undefined
    return (await this.exits()).get(id.toString())?.region
  }

  private indexPeer (index: Map<string, KnownExit>, p: Peer): void {
    const key = p.id.toString()
    if (p.id.equals(this.libp2p.peerId) || !p.protocols.includes(TUNNEL_PROTOCOL)) { index.delete(key); return }
    const agentBytes = p.metadata.get('AgentVersion')
    const agent = parseAgent(agentBytes == null ? undefined : new TextDecoder().decode(agentBytes))
    if (agent.exit) index.set(key, { id: p.id, region: agent.region })
    else index.delete(key)
  }

  private async exits (): Promise<Map<string, KnownExit>> {
    if (this.index != null && Date.now() - this.indexedAt < KNOWN_EXITS_REFRESH_MS) return this.index
    this.refreshing ??= (async () => {
      this.updatedDuringRefresh = []
      try {
        const index = new Map<string, KnownExit>()
        for (const p of await this.libp2p.peerStore.all()) this.indexPeer(index, p)
        for (const p of this.updatedDuringRefresh) this.indexPeer(index, p)
        this.index = index
        this.indexedAt = Date.now()
        return index
      } finally {
        this.refreshing = undefined
        this.updatedDuringRefresh = undefined
      }
    })()
    // with an index in hand the rebuild runs behind the answer: its failure only keeps the old index
    if (this.index != null) {
      this.refreshing.catch(() => {})
      return this.index
    }
    return this.refreshing
  }

  async candidates (request: ExitRequest): Promise<PeerId[]> {
    const exits = await this.exits()
    const connected = new Set(this.libp2p.getConnections().map(c => c.remotePeer.toString()))
    const scored: Array<{ id: PeerId, score: number }> = []
    for (const e of exits.values()) {
      if (request.region != null && !regionMatches(e.region, request.region)) continue
      // connected exits first; among equals, random so load spreads
      scored.push({ id: e.id, score: (connected.has(e.id.toString()) ? 1 : 0) + this.random() * 0.5 })
    }
    scored.sort((a, b) => b.score - a.score)
    return this.sticky.arrange(request, scored.map(s => s.id), p => p.toString())
  }

  report (exit: PeerId, request: ExitRequest, outcome: ExitOutcome): void {
    this.sticky.record(request, exit.toString(), outcome.ok, outcome.status)
  }
}
