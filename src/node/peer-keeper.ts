/**
 * Keeps the node reachable, and in the network, when the peers it depends on
 * go away and come back: each relay it listens through (`<relay>/p2p-circuit`)
 * is redialled and reserved on again while there is no direct connection to
 * it or no reservation on it, and the bootstrap peers are redialled while the
 * node has no peer at all. Redials back off exponentially, with jitter, up to
 * a cap, for as long as the node runs.
 *
 * js-libp2p 3 (libp2p 3.3, circuit-relay-v2 4.2, bootstrap 12) does neither:
 * - the relay transport takes its KEEP_ALIVE tag off a relay as soon as the
 *   connection closes, before the connection manager's reconnect queue reads
 *   the tags on `peer:disconnect`, so that queue never redials a relay;
 * - a named relay's listener reserves once, at start, and never again;
 *   the relay search (`/p2p-circuit`) reserves on relays that something else
 *   connects to, and only while it is short of one;
 * - `@libp2p/bootstrap` dials its list once, 100 ms after start.
 */

import { TypedEventEmitter } from 'main-event'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { minute, second } from '../constants.ts'
import { peerIdOf } from '../routing/advertised-relays.ts'
import type { ComponentLogger, Libp2pEvents, Logger, PeerId, PeerStore, Startable, TypedEventTarget } from '@libp2p/interface'
import type { ConnectionManager, TransportManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The first wait before a redial; it doubles after each failed one. */
export const DEFAULT_REDIAL_MIN_MS = 1 * second
/** The longest wait between redials: a relay's upgrade or a router's reboot is back within a minute or two, and a minute apart is nothing to a relay. */
export const DEFAULT_REDIAL_MAX_MS = 1 * minute
/** A redial that neither connects nor fails by then is given up (the reservation itself times out on its own, see libp2p.ts). */
const REDIAL_TIMEOUT_MS = 10 * second
/** The circuit relay v2 protocol a relay offers for reservations. */
const RELAY_HOP_PROTOCOL = '/libp2p/circuit/relay/0.2.0/hop'
/** How long identify may take to say what a relay just dialled offers. */
const IDENTIFY_WAIT_MS = 3 * second

/**
 * What makes the keeper look again: a connection closed or opened, or the
 * node's addresses changed (a reservation, i.e. a relayed address, came or went).
 */
const WATCHED_EVENTS = ['peer:disconnect', 'peer:connect', 'self:peer:update'] as const

/**
 * Capped exponential backoff with "equal jitter": wait n is drawn from
 * [d/2, d] with d = min(max, min * 2^n), so the exits that lost the same
 * relay do not all come back to it in the same second.
 */
export class Backoff {
  private n = 0
  constructor (private readonly minMs: number, private readonly maxMs: number, private readonly random: () => number = Math.random) {}

  next (): number {
    const d = Math.min(this.maxMs, this.minMs * 2 ** this.n)
    if (d < this.maxMs) this.n++
    return d / 2 + this.random() * d / 2
  }

  reset (): void {
    this.n = 0
  }
}

/** After a pause of the address ends, this much later: its end has passed on both clocks. */
const PAUSE_MARGIN_MS = 50

export interface PeerKeeperInit {
  /** Relays the node listens through, as multiaddrs ending in `/p2p/<relay>` (without `/p2p-circuit`). */
  relays?: string[]
  /** Peers to join the network through again while the node has no peer. Entries without a peer id, and this node itself, are skipped. */
  bootstrap?: string[]
  /** @default DEFAULT_REDIAL_MIN_MS (1 s) */
  minDelayMs?: number
  /** @default DEFAULT_REDIAL_MAX_MS (60 s) */
  maxDelayMs?: number
  /** For tests of the jitter. @default Math.random */
  random?: () => number
  /**
   * How long until an address may be dialled again (ms, 0: now): the node
   * does not dial a relay found gone at its address for a while
   * (gone-peers.ts). A redial waits for that rather than fail at once, and
   * such a wait counts as no attempt: the backoff grew through the pause,
   * and the relay was redialled up to half a minute after it ended.
   */
  pausedFor?: (addr: Multiaddr) => number
}

export interface PeerKeeperComponents {
  peerId: PeerId
  connectionManager: Pick<ConnectionManager, 'openConnection' | 'getConnections'>
  /** Where the relay transport, and so its reservations, is found. */
  transportManager: Pick<TransportManager, 'getTransports' | 'listen'>
  /** What identify learnt of a relay: whether it offers the hop protocol. */
  peerStore: Pick<PeerStore, 'get'>
  /** See WATCHED_EVENTS. */
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export type KeptKind = 'relay' | 'bootstrap'

export interface KeeperLost {
  kind: KeptKind
  /** The relay's multiaddr, or the bootstrap peers' multiaddrs joined with commas. */
  target: string
  /** 'not connected' or 'no reservation' for a relay, 'no peer' for the bootstrap peers. */
  reason: string
  /** When the keeper first saw the problem (ms since the epoch): the notice comes once a redial has failed, up to 10 s later. */
  since: number
}

export interface KeeperBack {
  kind: KeptKind
  target: string
  /** Since the keeper first saw it missing. */
  downMs: number
  /** Failed redials before this one worked (or before libp2p got it back on its own). */
  attempts: number
}

export interface PeerKeeperEvents {
  /** A redial failed for the first time since it was last fine: once per outage, not per attempt. */
  'keeper:lost': CustomEvent<KeeperLost>
  /** Fine again after a 'keeper:lost'. */
  'keeper:back': CustomEvent<KeeperBack>
}

export interface RelayState {
  addr: string
  /** A direct (not relayed) connection to the relay is open. */
  connected: boolean
  /** The relay holds a reservation for this node: it is reachable through it. */
  reserved: boolean
}

/**
 * The relay transport's reservation store, the one place where js-libp2p
 * holds and makes reservations. It is not part of the transport's
 * interface, hence the duck typing. A `configured` reservation is the kind
 * a named relay's listener made at start; that listener advertises the
 * relayed addresses again when one for its relay is made.
 */
interface Reservations {
  hasReservation: (peer: PeerId) => boolean
  addRelay: (peer: PeerId, type: 'configured') => Promise<unknown>
  /**
   * The peers addRelay() refuses ("The relay was previously invalid"): it
   * adds one whose reservation failed with a DialError or for want of the
   * hop protocol, and never takes it out while the node runs.
   */
  relayFilter?: { has: (key: Uint8Array) => boolean, remove?: (key: Uint8Array) => boolean }
  /** Every reservation the node holds, by relay, named or found by the search. */
  reservations?: { keys: () => Iterable<PeerId> }
}

/** A relay the search (`/p2p-circuit` in listen) found and reserved on: this node is reachable through it too. */
export interface FoundRelay {
  /** The address of the direct connection to it, or `/p2p/<relay>` while there is none. */
  addr: string
  connected: boolean
}

function reservationsOf (transportManager: PeerKeeperComponents['transportManager']): Reservations | undefined {
  for (const transport of transportManager.getTransports()) {
    const store = (transport as { reservationStore?: Partial<Reservations> }).reservationStore
    if (typeof store?.hasReservation === 'function' && typeof store.addRelay === 'function') return store as Reservations
  }
  return undefined
}

interface PeerAddr {
  addr: Multiaddr
  peer: PeerId
}

/** A multiaddr that ends in `/p2p/<peer>`, else undefined (libp2p says what is wrong with the others where it uses them). */
export function withPeer (address: string): PeerAddr | undefined {
  try {
    const addr = multiaddr(address)
    const id = peerIdOf(addr)
    return id == null ? undefined : { addr, peer: peerIdFromString(id) }
  } catch {
    return undefined
  }
}

/** Something the keeper keeps: what is wrong with it now, and what to do about it. */
interface Kept {
  kind: KeptKind
  target: string
  /** The addresses a redial dials (any one will do). */
  addrs: Multiaddr[]
  /** Whether the redial needs a dial (a relay connected but without a reservation does not): only then is a pause waited out. */
  needsDial: () => boolean
  /** Why it needs a redial now; undefined while it is fine. */
  problem: () => string | undefined
  redial: (signal: AbortSignal) => Promise<void>
  backoff: Backoff
  timer?: NodeJS.Timeout
  redialling: boolean
  /** When the keeper first saw the problem in this outage. */
  since?: number
  attempts: number
  /** Whether 'keeper:lost' went out for this outage. */
  reported: boolean
}

export class PeerKeeper extends TypedEventEmitter<PeerKeeperEvents> implements Startable {
  readonly [Symbol.toStringTag] = 'spareband:peer-keeper'
  private readonly log: Logger
  private readonly relays: PeerAddr[]
  private readonly bootstrap: Multiaddr[]
  private readonly kept: Kept[] = []
  private reservations?: Reservations
  private controller = new AbortController()
  private running = false
  private readonly check = (): void => { this.checkAll() }

  constructor (private readonly components: PeerKeeperComponents, private readonly init: PeerKeeperInit = {}) {
    super()
    this.log = components.logger.forComponent('spareband:node:peer-keeper')
    this.relays = (init.relays ?? []).flatMap(a => withPeer(a) ?? [])
    // a network definition lists its bootstrap nodes, and they load it too
    this.bootstrap = (init.bootstrap ?? []).flatMap(a => withPeer(a) ?? []).filter(p => !p.peer.equals(components.peerId)).map(p => p.addr)
  }

  start (): void {
    if (this.running) return
    this.running = true
    this.controller = new AbortController()
    for (const e of WATCHED_EVENTS) this.components.events.addEventListener(e, this.check)
  }

  /**
   * Once the transports listen, the named relays are listened on here, not
   * by libp2p's start (see libp2pListen()): libp2p stops the whole start
   * when one does not answer, so an exit whose relay was down when it
   * started (a power cut that took both down, say) did not start at all.
   * Each gets one try now, so one that answers is reserved on before start
   * returns, as before; one that does not is redialled like a lost one.
   */
  async afterStart (): Promise<void> {
    if (this.kept.length === 0) this.build()
    await Promise.all(this.kept.filter(k => k.kind === 'relay').map(async k => {
      k.since ??= Date.now()
      await this.redial(k)
    }))
    this.checkAll()
  }

  /** Before libp2p closes its connections: their 'peer:disconnect' must not schedule redials. */
  beforeStop (): void {
    if (!this.running) return
    this.running = false
    this.controller.abort()
    for (const e of WATCHED_EVENTS) this.components.events.removeEventListener(e, this.check)
    for (const k of this.kept) {
      clearTimeout(k.timer)
      k.timer = undefined
      this.forget(k)
    }
    // libp2p closes the relays' listeners as it stops: built again at the next start
    this.kept.length = 0
  }

  stop (): void {
    this.beforeStop()
  }

  relayStates (): RelayState[] {
    return this.relays.map(({ addr, peer }) => ({
      addr: addr.toString(),
      connected: this.directlyConnected(peer),
      reserved: this.reservations?.hasReservation(peer) ?? false
    }))
  }

  /** The relays the search reserved on, beside the named ones (relayStates()). */
  foundRelays (): FoundRelay[] {
    const named = new Set(this.relays.map(r => r.peer.toString()))
    const found: FoundRelay[] = []
    for (const peer of this.reservations?.reservations?.keys() ?? []) {
      if (named.has(peer.toString())) continue
      const direct = this.components.connectionManager.getConnections(peer).find(c => c.status === 'open' && c.limits == null)
      found.push({ addr: direct?.remoteAddr.toString() ?? `/p2p/${peer.toString()}`, connected: direct != null })
    }
    return found
  }

  private build (): void {
    const keep = (kind: KeptKind, addrs: Multiaddr[], needsDial: Kept['needsDial'], problem: Kept['problem'], redial: Kept['redial']): Kept => ({
      kind,
      target: addrs.map(String).join(','),
      addrs,
      needsDial,
      problem,
      redial,
      backoff: new Backoff(this.init.minDelayMs ?? DEFAULT_REDIAL_MIN_MS, this.init.maxDelayMs ?? DEFAULT_REDIAL_MAX_MS, this.init.random),
      redialling: false,
      attempts: 0,
      reported: false
    })
    const { connectionManager, transportManager } = this.components
    this.reservations = reservationsOf(transportManager)
    if (this.reservations == null && this.relays.length > 0) {
      this.log.error('found no circuit relay reservation store: relays %s will not be redialled', this.relays.map(r => r.addr.toString()).join(', '))
    }
    const reservations = this.reservations
    if (reservations != null) {
      for (const { addr, peer } of this.relays) {
        // the relay's listener, made by the first listen that got through: it
        // advertises the relayed addresses of every 'configured' reservation
        // on its relay after that, so later ones need only the reservation
        let listening = false
        let listenFailed = false
        let shunned = false
        this.kept.push(keep('relay', [addr], () => !this.directlyConnected(peer),
          () => !this.directlyConnected(peer) ? 'not connected' : !reservations.hasReservation(peer) ? 'no reservation' : undefined,
          async signal => {
            // dialled first: a listen on a relay that does not answer leaves its listener behind
            if (!this.directlyConnected(peer)) await connectionManager.openConnection(addr, { signal })
            if (!listening) {
              // A listen that fails after the dial (the peer is no relay, or
              // full) leaves its listener in libp2p too, one more at every
              // redial: after one has failed, only a peer that identify says
              // offers the relay service is asked again. The first is asked
              // at once, before the relay search can take the relay as one of
              // its own (then nothing would advertise it as the named one).
              if (listenFailed && !await this.offersRelay(peer, signal)) throw new Error('it answers, but offers no relay service')
              // libp2p's reservation store shuns a peer that once refused for
              // want of the relay protocol, for as long as the node runs: one
              // that offers it again (a relay restarted with its relay service
              // on, an upgrade) is taken off that list here, at a redial on the
              // keeper's backoff (growing, up to network.redial_max_seconds)
              if (shunned && !this.unshun(reservations, peer)) throw new Error('libp2p will not reserve on it again until this node restarts (it once offered no relay service)')
              shunned = false
              try {
                await transportManager.listen([addr.encapsulate('/p2p-circuit')])
              } catch (err: any) {
                listenFailed = true
                if (reservations.relayFilter?.has(peer.toMultihash().bytes) === true || /previously invalid/.test(String(err?.message)) || /previously invalid/.test(String(err?.errors?.[0]?.message))) {
                  shunned = true
                  this.log('relay %a refused a reservation for want of the relay service; asked again once it offers the service', addr)
                }
                throw err
              }
              listening = true
            } else if (!reservations.hasReservation(peer)) {
              // a relay we had reserved on may have come back without its relay service since: libp2p shuns it
              // then as at a first listen, and the same check lifts that once identify says it offers it again
              if (reservations.relayFilter?.has(peer.toMultihash().bytes) === true) {
                if (!await this.offersRelay(peer, signal)) throw new Error('it answers, but offers no relay service')
                if (!this.unshun(reservations, peer)) throw new Error('libp2p will not reserve on it again until this node restarts (it once offered no relay service)')
              }
              await reservations.addRelay(peer, 'configured')
            }
          }))
      }
    }
    if (this.bootstrap.length > 0) {
      this.kept.push(keep('bootstrap', this.bootstrap, () => true,
        () => connectionManager.getConnections().length === 0 ? 'no peer' : undefined,
        // one that answers is enough: the DHT finds the rest
        async signal => { await Promise.any(this.bootstrap.map(async a => connectionManager.openConnection(a, { signal }))) }))
    }
  }

  /**
   * Takes `peer` off libp2p's list of relays it will not reserve on; false
   * when that list is not where this libp2p keeps it (then it stays shunned
   * until the node restarts, as libp2p means it to).
   */
  private unshun (reservations: Reservations, peer: PeerId): boolean {
    const filter = reservations.relayFilter
    if (filter?.remove == null) return false
    const key = peer.toMultihash().bytes
    if (filter.has(key)) filter.remove(key)
    this.log('relay %p offers the relay service again: libp2p may reserve on it again', peer)
    return !filter.has(key)
  }

  /** Whether identify says the peer offers the relay's hop protocol (false if it has not said within IDENTIFY_WAIT_MS). */
  private async offersRelay (peer: PeerId, signal: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + IDENTIFY_WAIT_MS
    while (!signal.aborted) {
      const protocols = (await this.components.peerStore.get(peer).catch(() => undefined))?.protocols ?? []
      if (protocols.includes(RELAY_HOP_PROTOCOL)) return true
      // identified (it lists its protocols) without the hop protocol: not a relay, for now
      if (protocols.length > 0 || Date.now() >= deadline) return false
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    return false
  }

  private directlyConnected (peer: PeerId): boolean {
    // a reservation needs a direct connection: the relay transport refuses one over a relayed connection
    return this.components.connectionManager.getConnections(peer).some(c => c.status === 'open' && c.limits == null)
  }

  private checkAll (): void {
    if (!this.running) return
    for (const k of this.kept) {
      if (k.redialling) continue
      if (k.problem() == null) {
        clearTimeout(k.timer)
        k.timer = undefined
        this.fine(k)
      } else if (k.timer == null) {
        k.since ??= Date.now()
        this.schedule(k)
      }
    }
  }

  private schedule (k: Kept): void {
    k.timer = setTimeout(() => { void this.redial(k) }, k.backoff.next())
  }

  private async redial (k: Kept): Promise<void> {
    k.timer = undefined
    if (!this.running) return
    const pausedFor = this.init.pausedFor
    const wait = pausedFor == null ? 0 : Math.min(...k.addrs.map(a => pausedFor(a)))
    if (wait > 0 && k.problem() != null && k.needsDial()) {
      // dialled as soon as the node dials it again: neither an attempt nor a longer backoff
      k.since ??= Date.now()
      k.timer = setTimeout(() => { void this.redial(k) }, wait + PAUSE_MARGIN_MS)
      return
    }
    k.redialling = true
    try {
      if (k.problem() != null) await k.redial(AbortSignal.any([this.controller.signal, AbortSignal.timeout(REDIAL_TIMEOUT_MS)]))
    } catch (err) {
      this.log('redial of %s %s failed - %e', k.kind, k.target, err)
    } finally {
      k.redialling = false
    }
    if (!this.running) return
    const problem = k.problem()
    if (problem == null) {
      this.fine(k)
      return
    }
    k.attempts++
    if (!k.reported) {
      k.reported = true
      this.safeDispatchEvent('keeper:lost', { detail: { kind: k.kind, target: k.target, reason: problem, since: k.since ?? Date.now() } })
    }
    this.schedule(k)
  }

  private fine (k: Kept): void {
    if (k.reported) {
      this.safeDispatchEvent('keeper:back', { detail: { kind: k.kind, target: k.target, downMs: Date.now() - (k.since ?? Date.now()), attempts: k.attempts } })
    }
    this.forget(k)
  }

  /** A new outage starts from scratch: first wait, attempt count, notice. */
  private forget (k: Kept): void {
    k.since = undefined
    k.attempts = 0
    k.reported = false
    k.backoff.reset()
  }
}

export function peerKeeper (init: PeerKeeperInit = {}): (components: PeerKeeperComponents) => PeerKeeper {
  return (components) => new PeerKeeper(components, init)
}
