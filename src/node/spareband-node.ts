/**
 * The composition root: one node = identity + config + libp2p + the areas
 * (relay, routing, accounting) + the local control API. Start order is
 * libp2p, then the services that need it, then the API; stop runs the other
 * way round so nothing is left talking to a stopped libp2p.
 */

import { setMaxListeners } from 'node:events'
import { existsSync } from 'node:fs'
import { TypedEventEmitter } from 'main-event'
import { configModeWarning, resolveConfig, defaultDataDir, readConfigFile } from './config.ts'
import { checkNodeInit } from './node-init-check.ts'
import { identityModeWarning, loadIdentity, loadOrCreateIdentity } from './identity.ts'
import { buildLibp2p, checkUdpListenPorts, dhtClientMode, explainListenFailure } from './libp2p.ts'
import type { ListenAddresses } from './libp2p.ts'
import { metricsHandler } from './metrics.ts'
import { ControlApi, apiTokenModeWarning } from './control-api.ts'
import { renderDashboard } from './dashboard/index.ts'
import { parseAgent } from '../relay/exit-selector.ts'
import { exitPart, exitServices, proxyPart } from './relay-parts.ts'
import { routingPart } from './routing-part.ts'
import { throughputPart } from './throughput-part.ts'
import { accountingPart, openAccounting } from './accounting-part.ts'
import { foundRelaysPart, keeperPart } from './keeper-part.ts'
import { connectionTrimmerPart } from './connection-trimmer.ts'
import { aloneWarning, noDhtPeerWarning, unreachableExitWarning } from './alone-warning.ts'
import { RefusalNotices } from './refusal-notices.ts'
import type { OnFramingRefused } from './frame-guard.ts'
import type { BoundedDhtDatastore } from './dht-datastore.ts'
import { relayServicePart } from './relay-service-part.ts'
import { isLoopback } from '../relay/listen-address.ts'
import { lockDataDir } from './data-dir-lock.ts'
import { makeDataDir } from './data-dir.ts'
import { guardTunnelsOnClose } from './tunnel-close-guard.ts'
import type { DataDirLock } from './data-dir-lock.ts'
import type { ProxyFailureNotice, ProxyRefusalNotice } from '../relay/ingress.ts'
import type { AccountingCore, AccountingStatus } from './accounting-part.ts'
import { AGENT_NAME, VERSION } from '../constants.ts'
import { ConfigError, NodeStoppedError, NotStartedError } from '../errors.ts'
import { connectThroughTunnel } from '../relay/app-connect.ts'
import type { AppConnectOptions, TunnelSocket } from '../relay/app-connect.ts'
import type { ExitStatus, ProxyPart, ProxyStatus } from './relay-parts.ts'
import type { RoutingPart, RoutingStatus } from './routing-part.ts'
import type { ExitStats, OfferChange, TunnelExit } from '../relay/exit.ts'
import { DEFAULT_RECEIPT_LIST_LIMIT, receiptRow } from './accounting-report.ts'
import type { ReceiptRow } from './accounting-report.ts'
import { regionArgument } from '../routing/regions.ts'
import type { ProviderRow } from '../routing/routing-selector.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { missingRuntimeFlags } from './runtime-flags.ts'
import type { ConfigLayer, DeepReadonly, SparebandConfig, SparebandConfigInput } from './config.ts'
import type { Identity } from './identity.ts'
import type { PeerRefusalNotice } from './refusal-notices.ts'
import type { RelayServiceStatus } from './relay-service-part.ts'
import type { RelayServiceReason } from './public-relay-server.ts'
import type { FoundRelay, KeeperBack, KeeperLost, RelayState } from './peer-keeper.ts'
import type { Libp2p, PeerId, ServiceMap } from '@libp2p/interface'
import type { SilentConnections } from './silent-connections.ts'
import type { RelayWatch } from './relay-watch.ts'
import type { RelaySearch, RelaySearchStatus } from './relay-search.ts'

/** Fixed for the life of the process (node reads its flags only at start); status() hands out copies. */
const RUNTIME = { node: process.version, missingFlags: missingRuntimeFlags() }

/** Every connect() under way listens on the node's stop signal: past ten at once is no leak. */
function withoutListenerLimit (controller: AbortController): AbortController {
  setMaxListeners(Infinity, controller.signal)
  return controller
}

export interface SparebandNodeInit {
  /** Where identity, config and ledger live. @default SPAREBAND_DATA_DIR or ~/.spareband */
  dataDir?: string
  /** Overrides over the defaults (and over `configFile` when given). */
  config?: SparebandConfigInput
  /**
   * Read this TOML file below `config`; a ConfigError if it does not exist.
   * While it holds `proxy.password` and others can read it, status() warns.
   */
  configFile?: string
  /**
   * A config already resolved by the caller (the CLI, or an app with
   * `resolveConfig()`); `config` is then ignored, and `configFile` is not
   * read, only watched for status()'s warning (the CLI resolved the config
   * from it). It is checked as `config` is: a bad value is a ConfigError
   * naming its key.
   */
  resolvedConfig?: SparebandConfig | DeepReadonly<SparebandConfig>
  /** Create an identity when the data directory has none; when false, a missing key is an error. @default true */
  createIdentity?: boolean
  /** Serve the local control API. @default true */
  controlApi?: boolean
}

export interface PeerInfoSummary {
  peerId: string
  /** The remote address of each connection to the peer. */
  addresses: string[]
  /** The first connection's direction; `directions` has each one's. */
  direction: 'inbound' | 'outbound'
  /** Each connection's direction, in the order of `addresses`: a peer behind NAT may have dialled us as we dialled it through its relay. */
  directions: Array<'inbound' | 'outbound'>
  limited: boolean
  agent?: string
  region?: string
  latencyMs?: number
}

export interface NodeStatus {
  peerId: string
  version: string
  network: string
  region?: string
  addresses: string[]
  connections: number
  peers: number
  /** Connections ended since start because nothing came from the peer for 25 s (src/node/silent-connections.ts), or for 10 s from a relay this node is reached through or found silent (relay-watch.ts). */
  silentConnectionsEnded: number
  uptimeSeconds: number
  /** The node's clock when this status was taken, ms since the epoch: the dashboard's chart runs on it, whatever the browser's clock says. */
  time: number
  dht: {
    mode: 'server' | 'client'
    routingTableSize: number
    /** Records (capacity ads) and provider entries the DHT holds here now (dht-datastore.ts). */
    stored: { records: number, providers: number }
    /** Dropped since start: for room (the bound in all), and because the peer that wrote them wrote more than its own bound (a flood pushes out only its own); and records not taken because the one held was newer (a replayed old ad). */
    dropped: { forRoom: { records: number, providers: number }, overPeerBound: { records: number, providers: number }, olderRecords: number }
  }
  api?: string
  /** The node runtime: its version, and the runtime flags (src/node/runtime-flags.ts) it runs without, if any. */
  runtime: { node: string, missingFlags: string[] }
  /** Things an operator must know, e.g. that private targets are allowed. */
  warnings: string[]
  /** The relays this node listens through (`<relay>/p2p-circuit` in `listen`), as the keeper sees them. */
  relays?: RelayState[]
  /** The relays this node holds a reservation on that it does not name: the relay search found them (`/p2p-circuit` in `listen`). */
  relaysFound?: FoundRelay[]
  /** Whether this node searches for relays to be reached through, and why (src/node/relay-search.ts). */
  relaySearch?: RelaySearchStatus
  /** The circuit relay this node runs for others (whether it runs now, and why); absent with `relay.enabled = false`. */
  relayService?: RelayServiceStatus
  /** The exit (supplier side); `enabled: false` with zero counters when it is off. */
  exit?: ExitStatus
  /** The local SOCKS5 and HTTP proxies (consumer side). */
  proxy?: ProxyStatus
  routing?: RoutingStatus
  /** Absent when accounting is off. */
  accounting?: AccountingStatus
}

export interface SparebandEvents {
  'node:started': CustomEvent<{ peerId: string }>
  'node:stopped': CustomEvent<{ peerId: string }>
  'peer:connect': CustomEvent<{ peerId: string }>
  'peer:disconnect': CustomEvent<{ peerId: string }>
  /** A proxy client refused before any exit was asked (bad targeting user name, wrong credentials); rate-limited. */
  'proxy:refused': CustomEvent<ProxyRefusalNotice>
  /** A tunnel of this node's proxies or connect() that no exit carried: the exit's refusal or NO_EXIT, at most 10 a minute (the count held back goes with the next). */
  'proxy:failed': CustomEvent<ProxyFailureNotice>
  /** A relay this node listens through, or (while it has no peer) every bootstrap peer, failed a redial: once per outage. */
  'keeper:lost': CustomEvent<KeeperLost>
  /** What a 'keeper:lost' was about is fine again: connected, and a relay reserved on. */
  'keeper:back': CustomEvent<KeeperBack>
  /** The exit was paused or resumed (pauseExit(), resumeExit(), the control API, `spareband pause`). */
  'exit:pause': CustomEvent<{ paused: boolean }>
  /**
   * The exit stopped or began taking new tunnels, or stays closed for
   * another reason now: paused or resumed, its share schedule closed or
   * opened, a data quota used up (its open tunnels were ended) or renewed.
   * Its tunnel limit (max_tunnels) is load, not one of these.
   * Fired at once for a pause and a quota; within 10 s of the clock for a
   * schedule's window and a quota's new day or month.
   */
  'exit:availability': CustomEvent<OfferChange>
  /** This node refused a peer: a tunnel or a receipt at its exit, a gossiped message; rate-limited per kind. */
  'node:refused': CustomEvent<PeerRefusalNotice>
  /** The relay this node runs for others started or stopped as it gained or lost its public address (relay.enabled = "auto"). */
  'relay:service': CustomEvent<{ running: boolean, reason: RelayServiceReason }>
}

/**
 * A part of the node with its own lifecycle and status section, built once
 * libp2p exists (the exit, the proxies, accounting).
 */
export interface NodePart {
  readonly name: string
  start?(): Promise<void>
  stop?(): Promise<void>
  status?(): unknown
  routes?: Record<string, { get?: (req: any, body: unknown) => unknown, post?: (req: any, body: unknown) => unknown }>
  warnings?(): string[]
}

/** Builds parts for a node once libp2p exists. */
export type PartFactory = (node: SparebandNode, accounting: AccountingCore | undefined) => NodePart | undefined
/** Adds libp2p services before libp2p is created. */
export type ServiceFactory = (config: SparebandConfig, dataDir: string, accounting: AccountingCore | undefined) => Record<string, (components: any) => unknown>

/** The areas this node is composed of: filled in as they land. */
const SERVICE_FACTORIES: ServiceFactory[] = [exitServices]
// parts start in this order and stop in the reverse: the routing part withdraws the exit's ad (so consumers
// stop picking it), then the exit refuses new tunnels and ends its open ones, then accounting publishes the
// final receipts, which cover every byte carried. The proxy is made after routing and accounting (it uses both).
const PART_FACTORIES: PartFactory[] = [accountingPart, exitPart, routingPart, proxyPart, keeperPart, foundRelaysPart, relayServicePart, throughputPart, connectionTrimmerPart]

export class SparebandNode extends TypedEventEmitter<SparebandEvents> {
  readonly [Symbol.toStringTag] = 'spareband'
  readonly dataDir: string
  readonly config: SparebandConfig
  readonly identity: Identity
  readonly libp2p: Libp2p<ServiceMap>
  private readonly api?: ControlApi
  private readonly parts: NodePart[] = []
  /** What create() opened before libp2p (the ledger): closed by the first stop(). */
  private readonly accounting?: AccountingCore
  /** The data directory's node.lock, held from create() to the first stop(). */
  private readonly lock: DataDirLock
  /** The config file the node's config came from, if any: status() warns while others can read a proxy password in it. */
  private readonly configFile?: string
  private startedAt = 0
  /** Refusals of peers, as 'node:refused' events for the operator (the parts report theirs here). */
  readonly refusals: RefusalNotices
  private running = false
  /** stop() has run: the ledger is closed, and start() refuses. */
  private stopped = false
  /** Aborted when stop() begins: set-ups under way in connect() end then, not at their own time limits. */
  private readonly stopping = withoutListenerLimit(new AbortController())
  /** The start() or stop() under way: the next waits for it, so they run one at a time, in call order. */
  private lifecycle: Promise<void> = Promise.resolve()

  private constructor (dataDir: string, config: SparebandConfig, identity: Identity, libp2p: Libp2p<ServiceMap>, withApi: boolean, partFactories: PartFactory[], accounting: AccountingCore | undefined, lock: DataDirLock, configFile: string | undefined) {
    super()
    this.dataDir = dataDir
    this.config = config
    this.identity = identity
    this.libp2p = libp2p
    this.accounting = accounting
    this.lock = lock
    this.configFile = configFile
    this.refusals = new RefusalNotices(notice => this.safeDispatchEvent('node:refused', { detail: notice }))
    for (const f of partFactories) {
      const part = f(this, accounting)
      if (part != null) this.parts.push(part)
    }
    if (withApi) {
      const routes: Record<string, any> = {
        status: { get: () => this.status() },
        peers: { get: () => this.peers() }
      }
      for (const p of this.parts) Object.assign(routes, p.routes ?? {})
      this.api = new ControlApi({
        dataDir,
        dashboard: renderDashboard,
        host: config.api.host,
        port: config.api.port,
        peerId: identity.peerId.toString(),
        routes,
        metrics: metricsHandler(() => this.status())
      })
    }
    // before any other listener: DCUtR may close a relayed connection as soon as identify has run on it
    const closeLog = libp2p.logger.forComponent('spareband:node:tunnel-close-guard')
    libp2p.addEventListener('connection:open', e => { guardTunnelsOnClose(e.detail, () => libp2p.status === 'started', closeLog) })
    libp2p.addEventListener('peer:connect', e => this.safeDispatchEvent('peer:connect', { detail: { peerId: e.detail.toString() } }))
    libp2p.addEventListener('peer:disconnect', e => this.safeDispatchEvent('peer:disconnect', { detail: { peerId: e.detail.toString() } }))
    ;(libp2p.services.exit as TunnelExit | undefined)?.addEventListener('exit:offer:change', e => {
      this.safeDispatchEvent('exit:availability', { detail: { ...e.detail } })
      // the pause outranks every other reason: it changed exactly when it is the reason now or was before
      if ((e.detail.was === 'paused') !== e.detail.paused) this.safeDispatchEvent('exit:pause', { detail: { paused: e.detail.paused } })
    })
    ;(libp2p.services.exit as TunnelExit | undefined)?.addEventListener('exit:tunnel:denied', e => { this.refusals.note('tunnel', e.detail.consumer, e.detail.message, e.detail.status) })
  }

  static async create (init: SparebandNodeInit = {}): Promise<SparebandNode> {
    checkNodeInit(init)
    const dataDir = init.dataDir ?? defaultDataDir()
    // given resolved, checked all the same: an app's own, or a copy it changed, is no config resolveConfig() made
    let config = init.resolvedConfig == null ? undefined : resolveConfig([{ source: 'createSparebandNode() resolvedConfig', values: init.resolvedConfig }])
    if (config == null) {
      const layers: ConfigLayer[] = []
      if (init.configFile != null) layers.push(readConfigFile(init.configFile, { required: 'createSparebandNode() configFile' }))
      if (init.config != null) layers.push({ source: 'createSparebandNode() config', values: init.config })
      config = resolveConfig(layers)
    }
    // after the config checks: a refused config leaves no empty data directory behind;
    // nor does a node that may not make its identity, on a directory that does not exist
    if (init.createIdentity === false && !existsSync(dataDir)) await loadIdentity(dataDir)
    await makeDataDir(dataDir)
    // one node per data directory, held until stop(): before anything in it is read or written
    const lock = lockDataDir(dataDir)
    let accounting: AccountingCore | undefined
    try {
      const identity = init.createIdentity === false ? await loadIdentity(dataDir) : await loadOrCreateIdentity(dataDir)
      // the ledger opens first: a corrupt or foreign file stops us before anything listens
      accounting = openAccounting(config, dataDir, identity)
      const services: Record<string, (components: any) => unknown> = {}
      for (const f of SERVICE_FACTORIES) Object.assign(services, f(config, dataDir, accounting))
      // the guards are made with libp2p, before the node whose refusals they report
      let made: SparebandNode | undefined
      const onFramingRefused: OnFramingRefused = r => made?.refusals.note('framing', r.remote ?? 'unknown', r.reason, r.what === 'stream' && r.protocol != null ? `stream ${r.protocol}` : r.what)
      const libp2p = await buildLibp2p({ privateKey: identity.privateKey, config, services, onFramingRefused })
      made = new SparebandNode(dataDir, config, identity, libp2p, init.controlApi ?? true, PART_FACTORIES, accounting, lock, init.configFile)
      return made
    } catch (err) {
      // the caller gets why create() failed, not a failure to close
      try { await accounting?.ledger.close() } catch {} finally { lock.release() }
      throw err
    }
  }

  get peerId (): PeerId {
    return this.identity.peerId
  }

  get isRunning (): boolean {
    return this.running
  }

  /** The control API's URL once started. */
  get apiUrl (): string | undefined {
    return this.api?.address?.url
  }

  part<T extends NodePart> (name: string): T | undefined {
    return this.parts.find(p => p.name === name) as T | undefined
  }

  /**
   * Starts libp2p, then the parts, then the control API. Idempotent; a call
   * while stop() is under way (or the other way round) waits for it, so an
   * app may call them from anywhere. A start that fails (a port in use)
   * leaves the node stopped, and may be tried again. After stop() a node
   * cannot start again (NodeStoppedError): create a new one.
   */
  async start (): Promise<void> {
    return this.serialized(async () => this.startOnce())
  }

  /**
   * Stops what start() started, the other way round, and closes the ledger:
   * also on a node that never started, so that stop() releases whatever
   * createSparebandNode() opened. Idempotent; waits for a start() under way.
   */
  async stop (): Promise<void> {
    return this.serialized(async () => this.stopOnce())
  }

  private async serialized (step: () => Promise<void>): Promise<void> {
    const run = this.lifecycle.then(step)
    this.lifecycle = run.catch(() => {})
    return run
  }

  private async startOnce (): Promise<void> {
    if (this.running) return
    if (this.stopped) throw new NodeStoppedError()
    // a UDP port in use is told apart here: libp2p and its WebRTC library would only say that something failed
    await checkUdpListenPorts(this.config.listen)
    try {
      await this.libp2p.start()
    } catch (err) {
      throw explainListenFailure(err, this.config.listen)
    }
    const started: NodePart[] = []
    try {
      for (const p of this.parts) {
        await p.start?.()
        started.push(p)
      }
      // running before the control API announces itself in api.json: a
      // client that finds the file may ask for the status at once, and the
      // API's start resolves only after that write
      this.running = true
      this.startedAt = Date.now()
      await this.api?.start()
    } catch (err) {
      this.running = false
      for (const p of started.reverse()) await p.stop?.().catch(() => {})
      await this.libp2p.stop()
      throw err
    }
    this.safeDispatchEvent('node:started', { detail: { peerId: this.peerId.toString() } })
  }

  private async stopOnce (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.stopping.abort(new NotStartedError('the node stopped while the tunnel was being set up'))
    const wasRunning = this.running
    try {
      if (wasRunning) {
        this.running = false
        // every part and libp2p stop whatever one of them throws: the first error is the caller's after that
        let failure: unknown
        const attempt = async (fn: () => Promise<void> | undefined): Promise<void> => {
          try { await fn() } catch (err) { failure ??= err }
        }
        await attempt(async () => this.api?.stop())
        for (const p of [...this.parts].reverse()) await attempt(async () => p.stop?.())
        await attempt(async () => this.libp2p.stop())
        if (failure != null) throw failure
      }
    } finally {
      // after libp2p: the exit's services meter through the ledger until it stops
      try {
        await this.accounting?.ledger.close()
      } finally {
        this.lock.release()
      }
    }
    if (wasRunning) this.safeDispatchEvent('node:stopped', { detail: { peerId: this.peerId.toString() } })
  }

  /**
   * A TCP connection to `host:port` that leaves the network through an exit
   * (in `options.region`, else the proxy's default region), as the app's
   * end of the tunnel: what a client of the local SOCKS5 or HTTP proxy gets,
   * with no proxy port in between. Names are resolved by the exit. Resolves
   * once the exit has connected; rejects with TunnelRefusedError (`status`
   * says why) when no exit would or could connect, and with NotStartedError
   * when the node is not running or stops meanwhile. The bytes count in
   * `status().proxy` and in accounting like a proxy client's.
   *
   * @example
   * ```ts
   * const res = await new Promise(resolve => http.get('http://example.org/', {
   *   createConnection: () => socket
   * }, resolve))
   * ```
   * where `socket = await node.connect('example.org', 80, { region: 'de' })`.
   */
  async connect (host: string, port: number, options: AppConnectOptions = {}): Promise<TunnelSocket> {
    if (!this.running) throw new NotStartedError()
    const proxy = this.part<ProxyPart>('proxy')
    // a running node configured without it: the app's config, not its timing, is at fault
    if (proxy == null) throw new ConfigError('connect() tunnels through the node\'s proxy part, which proxy.enabled = false turns off: enable it (with socks_port and http_port 0 the listeners take any free port)', { source: 'node config', key: 'proxy.enabled' })
    let socket: TunnelSocket
    const signal = options.signal == null ? this.stopping.signal : AbortSignal.any([options.signal, this.stopping.signal])
    try {
      socket = await connectThroughTunnel(proxy.ingress, host, port, { ...options, signal })
    } catch (err) {
      // stop() under it: what failed is the node, not an exit (the attempt ends as BUSY or TIMEOUT)
      if (!this.running && options.signal?.aborted !== true) throw new NotStartedError('the node stopped while the tunnel was being set up')
      throw err
    }
    if (!this.running) {
      socket.destroy()
      throw new NotStartedError('the node stopped while the tunnel was being set up')
    }
    return socket
  }

  /**
   * Where the node's transports listen, each with `/p2p/<peer id>`: with
   * `announce` set, status().addresses are the announced addresses instead,
   * which need not be any of these.
   */
  listenAddresses (): string[] {
    if (!this.running) throw new NotStartedError()
    const listening = (this.libp2p.services.listenAddresses as ListenAddresses).get()
    const self = this.libp2p.peerId.toString()
    return [...new Set(listening.map(a => a.getComponents().some(c => c.name === 'p2p' && c.value === self) ? a.toString() : `${a.toString()}/p2p/${self}`))]
  }

  /** A plain JSON-safe object (no bigints), as the control API serves it. */
  status (): NodeStatus {
    if (!this.running) throw new NotStartedError()
    const dht: any = this.libp2p.services.dht
    const warnings: string[] = []
    const keyWarning = identityModeWarning(this.dataDir)
    if (keyWarning != null) warnings.push(keyWarning)
    const configWarning = this.configFile == null ? undefined : configModeWarning(this.configFile)
    if (configWarning != null) warnings.push(configWarning)
    const tokenWarning = apiTokenModeWarning(this.dataDir)
    if (tokenWarning != null) warnings.push(tokenWarning)
    for (const p of this.parts) warnings.push(...(p.warnings?.() ?? []))
    const alone = aloneWarning(this.config, this.libp2p.getPeers().length)
    if (alone != null) warnings.push(alone)
    const unreachableExit = unreachableExitWarning(this.config)
    if (unreachableExit != null) warnings.push(unreachableExit)
    const routingTableSize: number = dht?.routingTable?.size ?? 0
    const store = this.libp2p.services.dhtStore as BoundedDhtDatastore
    const connections = this.libp2p.getConnections()
    const noDhtPeer = noDhtPeerWarning(this.config, {
      dhtServer: dht?.getMode?.() === 'server',
      peers: this.libp2p.getPeers().length,
      routingTableSize,
      // since the oldest connection open now: a node alone for a while is not warned the moment it connects
      connectedMs: connections.length === 0 ? 0 : Date.now() - Math.min(...connections.map(c => c.timeline.open)),
      remoteAddrs: connections.filter(c => c.limits == null).map(c => c.remoteAddr)
    })
    if (noDhtPeer != null) warnings.push(noDhtPeer)
    // the token guards it, and nothing else does
    if (this.api != null && !isLoopback(this.config.api.host)) warnings.push(`the control API listens beyond loopback (api.host = ${this.config.api.host}): whoever reaches it with the token in api-token controls this node`)
    const status: NodeStatus = {
      peerId: this.peerId.toString(),
      version: `${AGENT_NAME}/${VERSION}`,
      network: this.config.network.name,
      region: this.config.region,
      addresses: [...new Set(this.libp2p.getMultiaddrs().map(String))],
      connections: this.libp2p.getConnections().length,
      peers: this.libp2p.getPeers().length,
      silentConnectionsEnded: ((this.libp2p.services.silentConnections as SilentConnections | undefined)?.ended ?? 0) + ((this.libp2p.services.relayWatch as RelayWatch | undefined)?.ended ?? 0),
      relaySearch: (this.libp2p.services.relaySearch as RelaySearch | undefined)?.status(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      time: Date.now(),
      dht: {
        mode: dht?.getMode?.() ?? (dhtClientMode(this.config.network) === false ? 'server' : 'client'),
        routingTableSize,
        stored: store.sizes,
        dropped: { forRoom: store.evicted, overPeerBound: store.evictedOverSenderBound, olderRecords: store.refusedOlder }
      },
      api: this.apiUrl,
      runtime: { ...RUNTIME, missingFlags: [...RUNTIME.missingFlags] },
      warnings
    }
    // each part's status under its name; NodeStatus names the types of the parts it knows
    const byPart = status as unknown as Record<string, unknown>
    for (const p of this.parts) {
      if (p.status != null) byPart[p.name] = p.status()
    }
    return status
  }

  /**
   * The countersigned receipts in this node's ledger (its own, and those
   * heard by gossip), newest first: at most `limit` (default 1000), only
   * the sessions `peer` took part in when given. What `spareband receipts
   * --json` lists. Throws ConfigError when accounting is off, RangeError
   * for a limit that is not a positive integer, TypeError for a peer that
   * is not a peer id.
   */
  receipts (options: { limit?: number, peer?: string } = {}): ReceiptRow[] {
    if (!this.running) throw new NotStartedError()
    const ledger = this.accounting?.ledger
    if (ledger == null) throw new ConfigError('receipts() reads the ledger, which accounting.enabled = false turns off', { source: 'node config', key: 'accounting.enabled' })
    const limit = options.limit ?? DEFAULT_RECEIPT_LIST_LIMIT
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, not ${String(limit)}`)
    let peer: PeerId | undefined
    if (options.peer != null) {
      try {
        peer = peerIdFromString(options.peer)
      } catch {
        throw new TypeError(`peer ${JSON.stringify(options.peer)} is not a peer id`)
      }
    }
    return ledger.receipts({ peer, limit }).map(receiptRow)
  }

  /**
   * Stops this node's exit taking new tunnels (open ones go on), across
   * restarts, until resumeExit(): what `spareband pause` and POST
   * /v1/exit/pause do. Fires 'exit:pause'.
   * @returns the exit's status after it
   * @throws {NotStartedError} before start() or after stop()
   * @throws {ConfigError} on a node that is no exit (exit.enabled = false)
   * The exit is paused even when the state cannot be saved: then it holds
   * until the node stops, and the status returned says why
   * (`stateNotSaved`).
   */
  pauseExit (): ExitStats {
    const exit = this.exitService('pauseExit')
    exit.pause()
    return exit.status()
  }

  /** Takes new tunnels again, now and after a restart (see pauseExit()). Same errors. */
  resumeExit (): ExitStats {
    const exit = this.exitService('resumeExit')
    exit.resume()
    return exit.status()
  }

  private exitService (what: string): TunnelExit {
    if (!this.running) throw new NotStartedError()
    const exit = this.libp2p.services.exit as TunnelExit | undefined
    if (exit == null) throw new ConfigError(`${what}() needs this node's exit, which exit.enabled = false turns off`, { source: 'node config', key: 'exit.enabled' })
    return exit
  }

  /**
   * The exits of `region` as `spareband providers` shows them, best first:
   * those a request for the region chooses from, looked up afresh in the DHT
   * (with their ads' figures) and those known only from identify on a
   * connection (`source`), with this node's measurements and their
   * reputation. Throws TypeError for a region that is not one.
   */
  async providers (region: string): Promise<ProviderRow[]> {
    if (!this.running) throw new NotStartedError()
    const wanted = regionArgument(region)
    const routing = this.part<RoutingPart>('routing')
    if (routing == null) return []
    return routing.selector.providers(wanted)
  }

  async peers (): Promise<PeerInfoSummary[]> {
    if (!this.running) throw new NotStartedError()
    const byPeer = new Map<string, PeerInfoSummary>()
    for (const conn of this.libp2p.getConnections()) {
      const id = conn.remotePeer.toString()
      let entry = byPeer.get(id)
      if (entry == null) {
        entry = { peerId: id, addresses: [], direction: conn.direction, directions: [], limited: conn.limits != null }
        try {
          const peer = await this.libp2p.peerStore.get(conn.remotePeer)
          const agent = peer.metadata.get('AgentVersion')
          if (agent != null) {
            entry.agent = new TextDecoder().decode(agent)
            entry.region = parseAgent(entry.agent).region
          }
        } catch {}
        if (conn.rtt != null) entry.latencyMs = Math.round(conn.rtt)
        byPeer.set(id, entry)
      }
      entry.addresses.push(conn.remoteAddr.toString())
      entry.directions.push(conn.direction)
      entry.limited = entry.limited && conn.limits != null
    }
    return [...byPeer.values()].sort((a, b) => a.peerId.localeCompare(b.peerId))
  }
}
