/**
 * Exit selection backed by the DHT: candidates are the exits whose verified
 * capacity ads the discovery found for the region (plus, as a fallback,
 * exits we are connected to and know from identify), ranked by the pure
 * scorer in selection.ts with learned telemetry, sticky per session.
 */

import { verifyRegion, addressesFromMultiaddrs } from './geo.ts'
import { ExitTelemetry, selectExits } from './selection.ts'
import { shuffle } from './random.ts'
import { DEFAULT_EXPLORE } from './constants.ts'
import { regionMatches } from './regions.ts'
import { StickySessions } from '../relay/exit-selector.ts'
import { TARGET_FAILURE_STATUSES, TargetFailureJudge } from './target-failures.ts'

import type { ExitDiscovery } from './discovery.ts'
import type { Candidate, RankedExit } from './selection.ts'
import type { VerifiedCapacityAd } from './capacity-ad.ts'
import type { ExitOutcome, ExitRequest, ExitSelector, KnownPeerSelector, TransferSample } from '../relay/exit-selector.ts'
import type { Libp2p, PeerId } from '@libp2p/interface'

/** Regions whose target failures are judged apart (asked-for regions are ISO codes: a few hundred at most). */
const MAX_TARGET_JUDGES = 512

/** Refusals for this consumer's own state at the exit (its tunnels or unsigned bytes there, its credit): not the exit's failure. */
export const CONSUMER_SIDE_STATUSES: ReadonlySet<string> = new Set(['RATE_LIMITED', 'INSUFFICIENT_CREDIT'])

/**
 * How long an exit that answered this consumer RATE_LIMITED is asked after
 * the region's others (unless one of our tunnels through it closed since):
 * its answer was "not now, for you", and asking it first again cost every
 * request of a scraper past its share a round trip there before the next.
 */
export const RATE_LIMITED_ASK_LATER_MS = 2_000
/** Exits remembered as having said RATE_LIMITED at most; the oldest is forgotten first. */
const MAX_RATE_LIMITED_EXITS = 1024

export interface ExitCandidate extends Candidate {
  id: PeerId
  reachability: 'direct' | 'relayed' | 'unknown'
  ad?: VerifiedCapacityAd
}

export interface ProviderRow {
  peerId: string
  region: string
  capacityMbps: number
  load: number
  pricePerGb: number
  score: number
  /** 0..1 from others' reports; null when none counts (JSON keeps the key: every row has the same keys). */
  reputation: number | null
  /** null while no round trip was measured. */
  rttMs: number | null
  /**
   * This node's own tunnels through it, as selection weighs them: attempts
   * that worked and that failed, each fading with a one-hour half-life (an
   * exit that failed a burst of tunnels, say when it was killed, ranks
   * lower until they fade), and the bandwidth measured (bytes/s), null until
   * one is.
   */
  attempts: { succeeded: number, failed: number, bandwidth: number | null }
  reachability: 'direct' | 'relayed' | 'unknown'
  verified: Candidate['verified']
  /** Our tunnels set up or open through it now: they count into the load the score sees (`load` is the ad's). */
  ownTunnels: number
  expiresAt: number | null
  /**
   * Where this node knows the exit from: its capacity ad in the DHT, or only
   * identify on a connection (no ad found yet: neutral figures, ranked
   * behind advertised exits; requests use it all the same).
   */
  source: 'dht' | 'identify'
  /**
   * Found gone lately (it could not be dialled, or did not answer a ping):
   * requests ask it after every other exit until a tunnel through it works
   * (relay/exit-liveness.ts). Its ad may live on for hours; this says it
   * is, as far as this node can tell, not there.
   */
  askedLast: boolean
}

/** What the network says of exits (accounting's reputation gossip), and what we saw of them for it. */
export interface ReputationSource {
  /** 0..1; undefined when nothing that counts is known. */
  score: (exit: PeerId) => number | undefined
  /** A tunnel attempt through `exit`: `status` is the TunnelStatus or error name of a failure. */
  observe: (exit: PeerId, ok: boolean, status?: string) => void
}

export interface RoutingSelectorInit {
  discovery: ExitDiscovery
  /** Exits known from identify, for when the DHT has nothing yet. */
  known?: KnownPeerSelector
  telemetry?: ExitTelemetry
  reputation?: ReputationSource
  explore?: number
  now?: () => number
  random?: () => number
}

export class RoutingSelector implements ExitSelector {
  readonly telemetry: ExitTelemetry
  private readonly sticky = new StickySessions()
  /** Per requested region: which targets are dead depends on the region's sites as much as on the exit (see target-failures.ts). */
  private readonly targetFailures = new Map<string, TargetFailureJudge>()
  /** Our tunnels set up or open through each exit, by peer id (see Candidate.ownTunnels). */
  private readonly open = new Map<string, number>()
  /**
   * rank()'s first picks, counted until the end of the current turn of the
   * event loop: requests that come together are ranked one after another
   * before any of them has begun its attempt (opened()), and would all see
   * the same counts and pick the same exit.
   */
  private readonly picked = new Map<string, number>()
  private readonly now: () => number
  private readonly random: () => number
  private askedLast?: (exit: PeerId) => boolean
  /** Exits that answered us RATE_LIMITED lately: when, and how many of our tunnels went through each then. */
  private readonly saidNotNow = new Map<string, { at: number, open: number }>()

  constructor (private readonly libp2p: Pick<Libp2p, 'getConnections' | 'peerId'>, private readonly init: RoutingSelectorInit) {
    this.telemetry = init.telemetry ?? new ExitTelemetry()
    this.now = init.now ?? Date.now
    this.random = init.random ?? Math.random
  }

  private candidateFromAd (ad: VerifiedCapacityAd): ExitCandidate {
    const conns = this.libp2p.getConnections(ad.peerId)
    const direct = conns.find(c => c.limits == null)
    const rtt = conns.map(c => c.rtt).find(r => r != null)
    const circuitOnly = ad.multiaddrs.length > 0 && ad.multiaddrs.every(m => m.toString().includes('/p2p-circuit'))
    const reachability = direct != null ? 'direct' : conns.length > 0 || circuitOnly ? 'relayed' : ad.multiaddrs.length > 0 ? 'direct' : 'unknown'
    // judge the claim by where we actually reach the exit, then by what it says of itself
    const seen = addressesFromMultiaddrs(conns.map(c => c.remoteAddr))
    const verified = verifyRegion(ad.region, seen.length > 0 ? seen : addressesFromMultiaddrs(ad.multiaddrs))
    return {
      id: ad.peerId,
      peerId: ad.peerId.toString(),
      region: ad.region,
      capacityMbps: ad.capacityMbps,
      load: ad.load,
      pricePerGbMicro: ad.pricePerGbMicro,
      rttMs: rtt,
      reputation: this.init.reputation?.score(ad.peerId),
      verified,
      ownTunnels: this.openThrough(ad.peerId),
      reachability,
      ad
    }
  }

  private async gather (request: ExitRequest): Promise<ExitCandidate[]> {
    // the region only: sessions are this selector's to keep (the known peers' own would bind them too)
    let known = await this.init.known?.candidates({ region: request.region }) ?? []
    const ads = request.region != null
      // first answers are enough to start, and exits we already know need no
      // wait at all; the rest of the lookup fills the cache for next time
      ? await this.init.discovery.find(request.region, { enough: 3, maxWaitMs: 500, noWait: known.length > 0 }).catch(() => this.init.discovery.cached(request.region))
      : this.init.discovery.cached()
    // the lookup may have waited for the node's first peer (just started): an
    // exit among them that identify has told of by now counts, though the
    // DHT did not have its ad yet (it publishes once it has a peer)
    if (known.length === 0 && request.region != null) known = await this.init.known?.candidates({ region: request.region }) ?? []
    return this.merge(ads, known, request.region)
  }

  /** The exits with an ad (as their ads have them), and those only identify told of (neutral figures), for `region`. */
  private async merge (ads: VerifiedCapacityAd[], known: PeerId[], region: string | undefined): Promise<ExitCandidate[]> {
    const byId = new Map<string, ExitCandidate>()
    for (const ad of ads) {
      if (ad.peerId.equals(this.libp2p.peerId)) continue
      // the exit's identify now names another region: it moved since this ad was cached
      const live = region == null ? undefined : await this.init.known?.liveRegion(ad.peerId)
      if (live != null && !regionMatches(live, region!)) continue
      byId.set(ad.peerId.toString(), this.candidateFromAd(ad))
    }
    for (const id of known) {
      if (byId.has(id.toString())) continue
      const ad = this.init.discovery.ad(id)
      const live = await this.init.known?.liveRegion(id)
      // the known peers are those whose identify names the region now: an ad of another (cached before the exit moved) does not count
      if (ad != null && (ad.capacityMbps <= 0 || (region != null && !regionMatches(ad.region, region) && !regionMatches(live, region)))) continue
      // no ad yet: neutral figures, so it can serve but ranks behind advertised exits
      byId.set(id.toString(), { id, peerId: id.toString(), region: live ?? region ?? '', capacityMbps: 10, load: 0.5, pricePerGbMicro: 1_000_000, reputation: this.init.reputation?.score(id), verified: 'unverifiable', ownTunnels: this.openThrough(id), reachability: 'unknown' })
    }
    return [...byId.values()]
  }

  async rank (request: ExitRequest): Promise<Array<RankedExit<ExitCandidate>>> {
    // in a random order: selectExits keeps equal scores in the order given, and exits nobody has
    // measured yet often score alike (the same ad figures), so every consumer took the same first one
    const candidates = shuffle(await this.gather(request), this.random)
    // read now, not while gathering: requests gathered together are scored and picked one by one from here
    for (const c of candidates) c.ownTunnels = this.openThrough(c.id)
    const ranked = selectExits(candidates, this.telemetry, { now: this.now(), random: this.random, explore: this.init.explore ?? DEFAULT_EXPLORE })
    // a new session's exit is drawn among the good ones (StickySessions.arrange), but not in an
    // exploration round, whose first exit is there to be tried (its score is a draw of its own), and
    // never one found gone: a session bound to it had each request go wherever ranked best then
    // nor one that just said "not now" to us: the new session would wait it out there while another is free
    const now = this.now()
    const draw = ranked[0]?.explored === true ? undefined : (r: RankedExit<ExitCandidate>) => this.askedLast?.(r.candidate.id) === true || this.saysNotNow(r.candidate.peerId, now) ? NaN : r.score
    const arranged = this.askLaterIfNotNow(request, this.sticky.arrange(request, ranked, r => r.candidate.peerId, draw), now)
    if (arranged.length > 0) this.pick(arranged[0].candidate.peerId)
    return arranged
  }

  /**
   * Exits that said RATE_LIMITED to us lately go after the others, while
   * none of our tunnels through them closed since. Not for a session's
   * requests: a session keeps its exit and waits out "not now" there (see
   * TunnelClient.open), and a new one is drawn among the good exits.
   */
  private askLaterIfNotNow<T extends RankedExit<ExitCandidate>> (request: ExitRequest, arranged: T[], now: number): T[] {
    if (this.saidNotNow.size === 0 || request.sessionId != null) return arranged
    const deferred = new Set(arranged.filter(r => this.saysNotNow(r.candidate.peerId, now)))
    return deferred.size === 0 ? arranged : [...arranged.filter(r => !deferred.has(r)), ...deferred]
  }

  /** Whether `id` said RATE_LIMITED to us lately and none of our tunnels through it closed since (forgotten once not). */
  private saysNotNow (id: string, now: number): boolean {
    const said = this.saidNotNow.get(id)
    if (said == null) return false
    if (now - said.at < RATE_LIMITED_ASK_LATER_MS && this.openThrough(id) >= said.open) return true
    this.saidNotNow.delete(id)
    return false
  }

  private pick (id: string): void {
    this.picked.set(id, (this.picked.get(id) ?? 0) + 1)
    setImmediate(() => { decrement(this.picked, id) })
  }

  async candidates (request: ExitRequest): Promise<PeerId[]> {
    return (await this.rank(request)).map(r => r.candidate.id)
  }

  report (exit: PeerId, request: ExitRequest, outcome: ExitOutcome): void {
    this.sticky.record(request, exit.toString(), outcome.ok, outcome.status)
    this.init.reputation?.observe(exit, outcome.ok, outcome.status)
    const at = this.now()
    const id = exit.toString()
    // "not now, for you" is this consumer's doing (its tunnels or its unsigned bytes at this exit, its
    // credit): no failure of the exit's. Counted, a scraper's one burst past its share of each exit sank
    // them all for an hour (the half-life), and tunnels went to whichever exit it had burst on least
    if (!outcome.ok && outcome.status != null && CONSUMER_SIDE_STATUSES.has(outcome.status)) {
      if (outcome.status === 'RATE_LIMITED') this.rememberNotNow(id, at)
      return
    }
    // a tunnel through it that worked, asked after it said "not now": room again. One asked before (its OK
    // comes once the exit's connect is done, often after the refusals of the same burst) says nothing of that
    if (outcome.ok && at - (outcome.setupMs ?? 0) >= (this.saidNotNow.get(id)?.at ?? Infinity)) this.saidNotNow.delete(id)
    // a target's failure counts against the exit only when the exit fails targets far more often than the region's others
    const againstExit = this.targetJudge(request.region).record(id, at, outcome.ok ? undefined : outcome.status)
    if (!outcome.ok && (outcome.status == null || !TARGET_FAILURE_STATUSES.has(outcome.status) || againstExit)) {
      this.telemetry.recordFailure(id, { at, status: outcome.status })
    }
  }

  private rememberNotNow (id: string, at: number): void {
    this.saidNotNow.delete(id)
    if (this.saidNotNow.size >= MAX_RATE_LIMITED_EXITS) this.saidNotNow.delete(this.saidNotNow.keys().next().value!)
    // the attempt that was refused has closed by now (TunnelClient calls closed() before report): counted without it
    this.saidNotNow.set(id, { at, open: this.openThrough(id) })
  }

  private targetJudge (region: string | undefined): TargetFailureJudge {
    const key = region ?? ''
    let judge = this.targetFailures.get(key)
    if (judge == null) {
      judge = new TargetFailureJudge()
      // regions asked for are ISO codes, a few hundred at most; a bound all the same, the oldest first
      if (this.targetFailures.size >= MAX_TARGET_JUDGES) this.targetFailures.delete(this.targetFailures.keys().next().value!)
      this.targetFailures.set(key, judge)
    }
    return judge
  }

  opened (exit: PeerId): () => void {
    const id = exit.toString()
    this.open.set(id, (this.open.get(id) ?? 0) + 1)
    let closed = false
    return () => {
      if (closed) return
      closed = true
      decrement(this.open, id)
    }
  }

  /** Our tunnels set up or open through `exit` now, with the picks of this turn not yet begun. */
  openThrough (exit: PeerId | string): number {
    const id = exit.toString()
    return (this.open.get(id) ?? 0) + (this.picked.get(id) ?? 0)
  }

  /**
   * A dial to `exit` failed, or it was found gone: its ad is fetched again,
   * for the relay it may have moved to (see ExitDiscovery.refetch). The
   * region's cache would only have brought it at its next refresh, a minute
   * or more later, and meanwhile every dial tried the dead circuit.
   */
  unreachable (exit: PeerId): void {
    // with a connection open, its addresses were not what failed
    if (this.libp2p.getConnections(exit).some(c => c.status === 'open')) return
    this.init.discovery.refetch(exit)
  }

  reportTransfer (exit: PeerId, t: TransferSample): void {
    this.telemetry.recordSuccess(exit.toString(), { at: this.now(), bytes: t.bytes, durationMs: t.durationMs, ttfbMs: t.ttfbMs })
  }

  /**
   * The exits of a region as `spareband providers` shows them, best first,
   * without exploration: those a request for the region would choose from,
   * the DHT's (looked up afresh) and those only identify told of (`source`).
   */
  async providers (region: string): Promise<ProviderRow[]> {
    let lookupFailed: unknown
    await this.init.discovery.find(region, { fresh: true }).catch(err => { lookupFailed = err })
    const candidates = await this.merge(this.init.discovery.cached(region), await this.init.known?.candidates({ region }) ?? [], region)
    // the lookup's error says more than an empty list, unless identify knows exits anyway
    if (candidates.length === 0 && lookupFailed != null) throw lookupFailed
    const ranked = selectExits(candidates, this.telemetry, { now: this.now(), random: this.random, explore: 0 })
    return ranked.map(r => ({
      peerId: r.candidate.peerId,
      region: r.candidate.region,
      capacityMbps: r.candidate.capacityMbps,
      load: r.candidate.load,
      pricePerGb: Number(r.candidate.pricePerGbMicro) / 1e6,
      score: Math.round(r.score * 1000) / 1000,
      reputation: r.candidate.reputation == null ? null : Math.round(r.candidate.reputation * 1000) / 1000,
      rttMs: r.candidate.rttMs == null ? null : Math.round(r.candidate.rttMs),
      attempts: {
        succeeded: Math.round(r.prediction.successes * 10) / 10,
        failed: Math.round(r.prediction.failures * 10) / 10,
        bandwidth: r.prediction.bandwidth == null ? null : Math.round(r.prediction.bandwidth)
      },
      reachability: r.candidate.reachability,
      verified: r.candidate.verified,
      ownTunnels: r.candidate.ownTunnels ?? 0,
      expiresAt: r.candidate.ad?.expiresAt ?? null,
      source: r.candidate.ad != null ? 'dht' : 'identify',
      askedLast: this.askedLast?.(r.candidate.id) === true
    }))
  }

  /** How providers() learns which exits requests ask last (the proxy's liveness checks, made after this selector). */
  setAskedLast (askedLast: (exit: PeerId) => boolean): void {
    this.askedLast = askedLast
  }
}

function decrement (counts: Map<string, number>, id: string): void {
  const left = (counts.get(id) ?? 1) - 1
  if (left > 0) counts.set(id, left)
  else counts.delete(id)
}
