/**
 * Prometheus metrics for `/metrics` on the control API, read from the
 * node's own `status()` at each scrape: what the CLI and the API report is
 * what Prometheus sees, and nothing on the data path counts twice.
 *
 * The registry is the node's own (several nodes may share a process) and is
 * made at the first scrape, so a node nobody scrapes pays nothing for it.
 * The process's own figures come from one registry per process: prom-client
 * starts observers for them (garbage collection, event-loop delay) that
 * nothing stops, so a registry of them per node would leave a set behind
 * for every node an app made, scraped and stopped.
 */

import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'

/** The part of `status()` read here; every field may be missing (a part switched off). */
export type StatusSnapshot = Record<string, any>

type Labels = Record<string, string>
/** A reading: one value, or values by labels. */
type Reading = number | undefined | Array<[Labels, number | undefined]>

interface MetricSpec {
  name: string
  help: string
  labelNames?: string[]
  read: (s: StatusSnapshot) => Reading
}

/** Numbers in status come as numbers or, for credits and big byte counts, as decimal strings. */
function num (v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v)
    return Number.isFinite(n) ? n : undefined
  }
  if (typeof v === 'boolean') return v ? 1 : 0
  return undefined
}

const byDirection = (inBytes: unknown, outBytes: unknown): Reading => [[{ direction: 'in' }, num(inBytes)], [{ direction: 'out' }, num(outBytes)]]

const GAUGES: MetricSpec[] = [
  {
    name: 'spareband_info',
    help: 'The node: always 1, with its identity as labels',
    labelNames: ['peer_id', 'version', 'region', 'network'],
    read: s => [[{ peer_id: String(s.peerId ?? ''), version: String(s.version ?? ''), region: String(s.region ?? ''), network: String(s.network ?? '') }, 1]]
  },
  { name: 'spareband_uptime_seconds', help: 'Seconds since the node started', read: s => num(s.uptimeSeconds) },
  { name: 'spareband_connections', help: 'Open libp2p connections', read: s => num(s.connections) },
  { name: 'spareband_peers', help: 'Connected peers', read: s => num(s.peers) },
  { name: 'spareband_dht_routing_table_size', help: 'Peers in the Kademlia routing table', read: s => num(s.dht?.routingTableSize) },
  {
    name: 'spareband_dht_stored',
    help: 'DHT records (capacity ads) and provider entries held here',
    labelNames: ['kind'],
    read: s => s.dht?.stored == null ? undefined : [[{ kind: 'records' }, num(s.dht.stored.records)], [{ kind: 'providers' }, num(s.dht.stored.providers)]]
  },
  { name: 'spareband_warnings', help: 'Warnings status reports (private targets allowed, missing runtime flags, ...)', read: s => Array.isArray(s.warnings) ? s.warnings.length : undefined },
  { name: 'spareband_reputation', help: 'This exit\'s reputation, 0..1, from the consumers\' reports it holds (absent with none)', read: s => num(s.accounting?.reputation?.own?.score) },
  { name: 'spareband_reputation_reporters', help: 'Consumers whose report on this exit counts', read: s => num(s.accounting?.reputation?.own?.reporters) },
  { name: 'spareband_exit_enabled', help: '1 when this node supplies bandwidth as an exit', read: s => num(s.exit?.enabled ?? false) },
  { name: 'spareband_exit_paused', help: '1 while the operator has paused the exit', read: s => s.exit == null ? undefined : num(s.exit.paused) },
  { name: 'spareband_exit_within_schedule', help: '1 while the share schedule lets new tunnels in', read: s => s.exit == null ? undefined : num(s.exit.withinSchedule) },
  { name: 'spareband_exit_tunnels_open', help: 'Tunnels open through this exit', read: s => num(s.exit?.tunnelsOpen) },
  { name: 'spareband_exit_streams_waiting', help: 'Tunnel streams open and waiting for their request', read: s => num(s.exit?.streamsWaiting) },
  {
    name: 'spareband_exit_quota_used_bytes',
    help: 'Bytes counted against the exit quota in the current period',
    labelNames: ['period'],
    read: s => s.exit?.quota == null ? undefined : [[{ period: 'day' }, num(s.exit.quota.dayBytes)], [{ period: 'month' }, num(s.exit.quota.monthBytes)]]
  },
  {
    name: 'spareband_exit_quota_limit_bytes',
    help: 'The exit quota of the period (0: none)',
    labelNames: ['period'],
    read: s => s.exit?.quota == null ? undefined : [[{ period: 'day' }, num(s.exit.quota.dailyLimit)], [{ period: 'month' }, num(s.exit.quota.monthlyLimit)]]
  },
  { name: 'spareband_proxy_tunnels_open', help: 'Tunnels open from this node\'s proxies and node.connect()', read: s => num(s.proxy?.tunnelsOpen) },
  { name: 'spareband_proxy_clients_open', help: 'Client connections to this node\'s proxies open now: in their handshake, tunnelled, or refused and draining', read: s => num(s.proxy?.clientsOpen) },
  { name: 'spareband_relay_running', help: 'Whether this node\'s circuit relay runs now (1) or not (0: relay.enabled = "auto" and no public address)', read: s => s.relayService == null ? undefined : s.relayService.running ? 1 : 0 },
  { name: 'spareband_relay_reservations', help: 'Peers holding a reservation on this node\'s circuit relay', read: s => num(s.relayService?.reservations) },
  { name: 'spareband_relay_circuits', help: 'Relayed connections through this node open now', read: s => num(s.relayService?.circuits) },
  { name: 'spareband_routing_known_exits', help: 'Exits this node knows of', read: s => num(s.routing?.knownExits) },
  {
    name: 'spareband_credits',
    help: 'Credits by kind, as this node\'s ledger sees them',
    labelNames: ['kind'],
    read: s => s.accounting?.enabled !== true
      ? undefined
      : (['earned', 'unpaid', 'spent', 'allowance', 'balance'] as const).map(kind => [{ kind }, num(s.accounting[kind])])
  },
  {
    name: 'spareband_unsigned_bytes',
    help: 'Bytes carried but not yet covered by a receipt: as an exit (carried) and as a consumer (used)',
    labelNames: ['side'],
    read: s => s.accounting?.pending == null
      ? undefined
      : [[{ side: 'carried' }, num(s.accounting.pending.carriedUnsignedBytes)], [{ side: 'used' }, num(s.accounting.pending.usedUnsignedBytes)]]
  },
  { name: 'spareband_receipts_stored', help: 'Receipts in the ledger (one per session)', read: s => num(s.accounting?.receipts) }
]

const COUNTERS: MetricSpec[] = [
  { name: 'spareband_exit_bytes_total', help: 'Bytes the exit carried: in from consumers to targets, out from targets to consumers', labelNames: ['direction'], read: s => s.exit == null ? undefined : byDirection(s.exit.bytesIn, s.exit.bytesOut) },
  {
    name: 'spareband_dht_dropped_total',
    help: 'DHT records and provider entries dropped: for room, because the peer that wrote them wrote more than its own bound (a flood), or (records) not taken because the one held was newer (a replay)',
    labelNames: ['kind', 'reason'],
    read: s => s.dht?.dropped == null
      ? undefined
      : [[{ kind: 'records', reason: 'room' }, num(s.dht.dropped.forRoom.records)], [{ kind: 'providers', reason: 'room' }, num(s.dht.dropped.forRoom.providers)],
          [{ kind: 'records', reason: 'peer_bound' }, num(s.dht.dropped.overPeerBound.records)], [{ kind: 'providers', reason: 'peer_bound' }, num(s.dht.dropped.overPeerBound.providers)],
          [{ kind: 'records', reason: 'older' }, num(s.dht.dropped.olderRecords)]]
  },
  { name: 'spareband_silent_connections_ended_total', help: 'Connections ended because nothing came from the peer for 25 s, or 10 s from a relay the node is reached through or found silent (a dead host or line)', read: s => num(s.silentConnectionsEnded) },
  { name: 'spareband_exit_tunnels_total', help: 'Tunnels the exit carried', read: s => num(s.exit?.tunnelsTotal) },
  { name: 'spareband_exit_streams_waiting_reset_total', help: 'Tunnel streams let go (answered RATE_LIMITED or BUSY, and closed) while waiting for their request: their consumer, or all, had as many waiting as the exit takes tunnels', read: s => num(s.exit?.streamsWaitingReset) },
  {
    name: 'spareband_exit_denied_total',
    help: 'Tunnels the exit refused, by status',
    labelNames: ['status'],
    read: s => s.exit?.deniedByStatus == null ? undefined : Object.entries(s.exit.deniedByStatus).map(([status, n]) => [{ status }, num(n)])
  },
  { name: 'spareband_proxy_bytes_total', help: 'Bytes through this node\'s proxies: in from exits, out to exits', labelNames: ['direction'], read: s => s.proxy == null ? undefined : byDirection(s.proxy.bytesIn, s.proxy.bytesOut) },
  { name: 'spareband_proxy_tunnels_total', help: 'Tunnels opened from this node', read: s => num(s.proxy?.tunnelsTotal) },
  {
    name: 'spareband_proxy_failed_total',
    help: 'Tunnels from this node that no exit carried, by what the client was told (the exit\'s status, NO_EXIT or NO_ANSWER)',
    labelNames: ['status'],
    read: s => s.proxy?.failedByStatus == null ? undefined : Object.entries(s.proxy.failedByStatus).map(([status, n]) => [{ status }, num(n)])
  },
  {
    name: 'spareband_proxy_refused_total',
    help: 'Clients the proxies refused before asking any exit, by why: targeting (a user name that names no exit), credentials',
    labelNames: ['kind'],
    read: s => s.proxy?.refused == null ? undefined : (['targeting', 'credentials'] as const).map(kind => [{ kind }, num(s.proxy.refused[kind])])
  },
  { name: 'spareband_proxy_broken_total', help: 'Tunnels from this node that ended abnormally after opening: a reset at either end, the exit lost, an idle timeout', read: s => num(s.proxy?.broken) },
  { name: 'spareband_bytes_carried_total', help: 'Bytes this node carried as an exit, from countersigned receipts', read: s => num(s.accounting?.bytesCarried) },
  { name: 'spareband_bytes_used_total', help: 'Bytes this node used as a consumer, from countersigned receipts', read: s => num(s.accounting?.bytesUsed) },
  { name: 'spareband_exit_holds_total', help: 'Times a consumer\'s traffic was held for unsigned or unpaid bytes', read: s => num(s.accounting?.pending?.holds) },
  { name: 'spareband_exit_forgiven_bytes_total', help: 'Bytes let off for tunnels cut mid-transfer', read: s => num(s.accounting?.pending?.forgivenBytes) },
  { name: 'spareband_exit_receipts_refused_total', help: 'Receipt frames refused over a consumer\'s budget', read: s => num(s.accounting?.pending?.receiptsRefused) },
  {
    name: 'spareband_receipt_gossip_total',
    help: 'Gossiped receipts by outcome',
    labelNames: ['result'],
    read: s => s.accounting?.gossip == null
      ? undefined
      : (['accepted', 'ignored', 'rejected', 'published'] as const).map(result => [{ result }, num(s.accounting.gossip[result])])
  },
  {
    name: 'spareband_reputation_gossip_total',
    help: 'Gossiped reputation reports by outcome',
    labelNames: ['result'],
    read: s => s.accounting?.reputation == null
      ? undefined
      : (['accepted', 'ignored', 'rejected', 'published'] as const).map(result => [{ result }, num(s.accounting.reputation[result])])
  }
]

/** Sets one metric from a reading: the old values go, so a label that vanished is not reported stale. */
function apply (metric: Gauge | Counter, reading: Reading): void {
  metric.reset()
  if (reading == null) return
  const set = (labels: Labels, value: number | undefined): void => {
    if (value == null) return
    // a counter has no set(): from its reset, inc() by the value is the same
    if (metric instanceof Gauge) metric.set(labels, value)
    else metric.inc(labels, value)
  }
  if (typeof reading === 'number') set({}, reading)
  else for (const [labels, value] of reading) set(labels, value)
}

/**
 * The `/metrics` handler: Prometheus text of the node's status, plus the
 * process's own figures (CPU, memory, event loop lag, handles).
 */
let processRegistry: Registry | undefined

/** CPU, memory, event-loop lag, handles: the process's, whichever node asks. */
function processMetrics (): Registry {
  if (processRegistry == null) {
    processRegistry = new Registry()
    // prom-client counts CPU from its first reading, taken here, at the first
    // scrape: a node that had carried a GB for minutes reported 0.016 s. The
    // counters start from what the process used before, as Prometheus's
    // process_cpu_seconds_total means (CPU since the process started)
    const before = process.cpuUsage()
    collectDefaultMetrics({ register: processRegistry })
    const seed: Array<[string, number]> = [
      ['process_cpu_user_seconds_total', before.user],
      ['process_cpu_system_seconds_total', before.system],
      ['process_cpu_seconds_total', before.user + before.system]
    ]
    for (const [name, micros] of seed) (processRegistry.getSingleMetric(name) as Counter | undefined)?.inc(micros / 1e6)
  }
  return processRegistry
}

export function metricsHandler (status: () => StatusSnapshot): () => Promise<string> {
  let registry: Registry | undefined
  let snapshot: StatusSnapshot = {}
  /** Metrics without labels that have no value in this scrape (an exit's on a node that is none, a reputation with no report). */
  const absent = new Set<string>()
  const collectFor = (spec: MetricSpec) => function (this: Gauge | Counter) {
    const reading = spec.read(snapshot)
    if (reading == null && (spec.labelNames ?? []).length === 0) absent.add(spec.name)
    apply(this, reading)
  }
  const build = (): Registry => {
    const r = new Registry()
    for (const spec of GAUGES) {
      // eslint-disable-next-line no-new
      new Gauge({ name: spec.name, help: spec.help, labelNames: spec.labelNames ?? [], registers: [r], collect: collectFor(spec) })
    }
    for (const spec of COUNTERS) {
      // eslint-disable-next-line no-new
      new Counter({ name: spec.name, help: spec.help, labelNames: spec.labelNames ?? [], registers: [r], collect: collectFor(spec) })
    }
    return r
  }
  const scrape = async (): Promise<string> => {
    registry ??= build()
    // one status per scrape, read by every metric
    snapshot = status()
    absent.clear()
    const text = await registry.metrics()
    // prom-client writes 0 for a metric without labels that has no value; absent is what it is
    const present = text.split('\n').filter(line => line.startsWith('#') || !absent.has(line.split(' ', 1)[0])).join('\n')
    return present + (await processMetrics().metrics())
  }
  // one scrape at a time: the metrics read the snapshot, and fill the absent set, across awaits
  let last: Promise<unknown> = Promise.resolve()
  return async () => {
    const next = last.then(scrape, scrape)
    last = next.catch(() => {})
    return next
  }
}
