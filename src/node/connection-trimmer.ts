/**
 * Keeps room for new connections. libp2p refuses inbound connections once
 * it holds `maxConnections`, and its pruner closes only connections whose
 * streams are all identify, autonat or DCUtR: gossipsub keeps a stream open
 * on every connection to a spareband peer, so nothing was ever pruned, and
 * a busy exit that DHT walks had connected to a few hundred peers refused
 * every new consumer for good.
 *
 * This closes, when the count nears the limit, the connections that carry
 * only background protocols (identify, ping, gossip, the DHT, autonat,
 * DCUtR): never one with a tunnel, a receipt stream, a circuit or any
 * other stream, nor one to a peer kept on purpose (a keep-alive tag: the
 * relays this node reserved on; a peer holding a reservation on this
 * relay; a gossip mesh peer; a relay or bootstrap peer named in the
 * config), nor one younger than GRACE_MS: a consumer dials, then opens its
 * tunnel, and closing the newest first (as libp2p's pruner does) turned
 * newcomers away, the very thing this is for. Of the rest, the least
 * valued by libp2p's peer tags (the DHT's routing table, bootstrap) go
 * first, the longest idle in the background before the newer.
 */

import { KEEP_ALIVE } from '@libp2p/interface'
import { MAX_CONNECTIONS, givenAddresses } from './libp2p.ts'
import { withPeer } from './peer-keeper.ts'
import type { Connection, Libp2p, Logger } from '@libp2p/interface'
import type { NodePart, SparebandNode } from './spareband-node.ts'
import type { SparebandConfig } from './config.ts'

/** How long a new connection has to open its first stream of use before it may be closed. */
export const GRACE_MS = 30_000

/** What a peer holding a reservation on this node's relay is tagged with (@libp2p/circuit-relay-v2). */
const RELAY_SOURCE_TAG = 'circuit-relay-source'

export interface ConnectionTrimmerInit {
  /** libp2p's connectionManager.maxConnections. */
  maxConnections: number
  /** Protocols a connection may carry and still be closed: the background ones. */
  background: ReadonlySet<string>
  /** Gossip topics whose mesh peers are kept. */
  topics: readonly string[]
  /** Peer ids never closed here (the named relays, the bootstrap peers). */
  keep?: ReadonlySet<string>
  log: Logger
  /** How often the count is looked at, besides on each new connection. @default 30 s */
  checkMs?: number
  /** @default GRACE_MS */
  graceMs?: number
  now?: () => number
}

/** Least time between two looks at every connection (each reads every peer's tags): a burst of new ones above the mark costs one. */
const MIN_TRIM_INTERVAL_MS = 1000

export class ConnectionTrimmer {
  private timer?: NodeJS.Timeout
  private later?: NodeJS.Timeout
  private trimming = false
  private lastTrim = 0
  private readonly onOpen = (): void => {
    const wait = this.lastTrim + MIN_TRIM_INTERVAL_MS - Date.now()
    if (wait <= 0) { void this.trim(); return }
    if (this.later != null) return
    this.later = setTimeout(() => { this.later = undefined; void this.trim() }, wait)
    this.later.unref()
  }
  /** Connections this trimmer closed. */
  closed = 0

  constructor (private readonly libp2p: Libp2p<any>, private readonly init: ConnectionTrimmerInit) {}

  /** Trimming starts above this many connections... */
  get highWater (): number {
    return this.init.maxConnections - Math.max(1, Math.floor(this.init.maxConnections / 10))
  }

  /** ...and closes down to this many. */
  get lowWater (): number {
    return this.init.maxConnections - Math.max(2, Math.floor(this.init.maxConnections / 5))
  }

  start (): void {
    this.libp2p.addEventListener('connection:open', this.onOpen)
    this.timer = setInterval(this.onOpen, this.init.checkMs ?? 30_000)
    this.timer.unref()
  }

  stop (): void {
    this.libp2p.removeEventListener('connection:open', this.onOpen)
    clearInterval(this.timer)
    clearTimeout(this.later)
    this.later = undefined
  }

  async trim (): Promise<number> {
    if (this.trimming) return 0
    // those closing (ours among them) are still listed until they are gone
    const connections = this.libp2p.getConnections().filter(c => c.status === 'open')
    if (connections.length <= this.highWater) return 0
    this.trimming = true
    this.lastTrim = Date.now()
    try {
      const mesh = new Set<string>()
      const pubsub = this.libp2p.services.pubsub as { getMeshPeers?: (topic: string) => string[] } | undefined
      for (const topic of this.init.topics) for (const p of pubsub?.getMeshPeers?.(topic) ?? []) mesh.add(p)
      const candidates: Array<{ connection: Connection, value: number }> = []
      const youngest = (this.init.now ?? Date.now)() - (this.init.graceMs ?? GRACE_MS)
      for (const connection of connections) {
        const peer = connection.remotePeer.toString()
        if (connection.status !== 'open' || connection.timeline.open > youngest || mesh.has(peer) || this.init.keep?.has(peer)) continue
        if (connection.streams.some(s => s.protocol == null || s.protocol === '' || !this.init.background.has(s.protocol))) continue
        const value = await this.tagValue(connection)
        if (value != null) candidates.push({ connection, value })
      }
      // the least valued first; of equals, the oldest (past the grace, they have carried nothing but background)
      candidates.sort((a, b) => a.value - b.value || a.connection.timeline.open - b.connection.timeline.open)
      const excess = connections.length - this.lowWater
      let n = 0
      for (const { connection } of candidates.slice(0, excess)) {
        // nothing on it but background streams: a graceful close cuts nothing
        connection.close().catch(err => { connection.abort(err) })
        n++
      }
      this.closed += n
      if (n > 0) this.init.log('%d connections, limit %d: closed %d that carried only background protocols', connections.length, this.init.maxConnections, n)
      return n
    } finally {
      this.trimming = false
    }
  }

  /** The sum of the peer's tag values, or undefined for a peer kept on purpose. */
  private async tagValue (connection: Connection): Promise<number | undefined> {
    let tags: Map<string, { value: number }>
    try {
      tags = (await this.libp2p.peerStore.get(connection.remotePeer)).tags
    } catch {
      return 0
    }
    let sum = 0
    for (const [name, tag] of tags) {
      if (name.startsWith(KEEP_ALIVE) || name === RELAY_SOURCE_TAG) return undefined
      sum += tag.value
    }
    return sum
  }
}

/** The protocols a connection may carry and still be closed to make room: those every peer runs in the background. */
export function backgroundProtocols (config: Pick<SparebandConfig, 'network'>): Set<string> {
  return new Set([
    '/ipfs/id/1.0.0', '/ipfs/id/push/1.0.0', '/ipfs/ping/1.0.0',
    '/meshsub/1.0.0', '/meshsub/1.1.0', '/meshsub/1.2.0', '/floodsub/1.0.0',
    config.network.dht_protocol,
    '/libp2p/autonat/1.0.0', '/libp2p/dcutr'
  ])
}

export function connectionTrimmerPart (node: SparebandNode): NodePart {
  const { libp2p, config } = node
  // the peers named in the config: the allow list keeps their connections from libp2p's pruner, this keeps them from this one
  const named = givenAddresses(config).flatMap(a => withPeer(a)?.peer.toString() ?? [])
  const trimmer = new ConnectionTrimmer(libp2p, {
    maxConnections: MAX_CONNECTIONS,
    background: backgroundProtocols(config),
    topics: [config.network.receipts_topic, config.network.reputation_topic],
    keep: new Set(named),
    log: libp2p.logger.forComponent('spareband:node:connection-trimmer')
  })
  return {
    name: 'connectionTrimmer',
    start: async () => { trimmer.start() },
    stop: async () => { trimmer.stop() }
  }
}
