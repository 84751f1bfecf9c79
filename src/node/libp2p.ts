/**
 * The libp2p options for a spareband node: one place that turns the node
 * config into transports, encryption, muxing and services.
 */

import { createSocket } from 'node:dgram'
import { createLibp2p, dnsaddrResolver } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { relayService } from './public-relay-server.ts'
import { listensPublicly, ownPublicAddresses } from './own-public-addresses.ts'
import { noise } from '@chainsafe/libp2p-noise'
import { noiseCrypto } from './noise-crypto.ts'
import { batchedYamux } from './yamux-window.ts'
import { guardedEncrypter, guardedMuxer, guardedTransport, libp2pFraming } from './frame-guard.ts'
import type { OnFramingRefused } from './frame-guard.ts'
import { throttleRandomWalk } from './walk-throttle.ts'
import { stopWithoutLeftoverTimers } from './libp2p-stop-timers.ts'
import { silentConnections, withHearingClock } from './silent-connections.ts'
import { relayWatch } from './relay-watch.ts'
import { GonePeers } from './gone-peers.ts'
import { relaySearch, searchListeners } from './relay-search.ts'
import { SilentRelays } from './silent-relays.ts'
import { peerAddressFilter } from './peer-address-filter.ts'
import { DnsNameResolver, GivenAddresses, privateDialGater } from './private-dials.ts'
import type { LookupAll } from './private-dials.ts'
import { AdvertisedRelays, peerIdOf } from '../routing/advertised-relays.ts'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { gossipScoreParams } from './gossip-scoring.ts'
import { identify, identifyPush } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { autoNAT } from '@libp2p/autonat'
import { dcutr } from '@libp2p/dcutr'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper } from '@libp2p/kad-dht'
import { gossipsub } from '@libp2p/gossipsub'
import { bootstrap } from '@libp2p/bootstrap'
import { BoundedDhtDatastore } from './dht-datastore.ts'
import { DhtSenders, dhtSenderTags } from './dht-senders.ts'
import { peerKeeper } from './peer-keeper.ts'
import { AGENT_NAME, MiB, VERSION, second } from '../constants.ts'
import { AddressInUseError } from '../errors.ts'
import { formatAgent } from '../relay/exit-selector.ts'
import { capacityAdAuthor, capacitySelector, capacityValidator, heldAdIsNewer } from '../routing/capacity-ad.ts'
import type { SparebandConfig } from './config.ts'
import type { ComponentLogger, ConnectionGater, Libp2p, Libp2pEvents, PrivateKey, PeerDiscovery, ServiceMap, StreamMuxerFactory, TypedEventTarget } from '@libp2p/interface'
import type { Libp2pOptions } from 'libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'

/**
 * A yamux stream aborts when its unread data passes this; a paused tunnel
 * stream can still receive a whole yamux window (up to 16 MiB), so the
 * js-libp2p default of 4 MiB would reset busy tunnels.
 */
export const STREAM_READ_BUFFER = 32 * MiB

/**
 * yamux grows a stream's window up to this. The exit counts bytes as carried
 * when it sends them, the consumer signs them when they arrive: everything in
 * flight is "unsigned", and past the 4 MiB threshold the exit holds the
 * tunnel. yamux's 16 MiB default let a fast tunnel run into that threshold
 * all the time; 2 MiB still allows 20 MB/s per tunnel at 100 ms RTT.
 */
export const YAMUX_MAX_WINDOW = 2 * MiB

/**
 * The least time libp2p's connection monitor gives a ping (every 10 s, on
 * every connection) before it aborts the connection, and every stream on
 * it. A ping's frames queue behind the tunnel data already sent on the
 * connection, up to a window per stream (YAMUX_MAX_WINDOW): with hundreds
 * of busy tunnels that took more than libp2p's 5 s, and a consumer under
 * a scraper's load of 600 downloads lost its connection to the exit, and
 * every tunnel with it. A peer gone silent is found within 30 s by
 * silent-connections.ts; this minute is the backstop for connections
 * without its clock.
 */
export const PING_TIMEOUT_FLOOR = 60 * second

/** New inbound connections a second from one host (libp2p's default is 5); a relay is one host for all it relays. */
export const INBOUND_PER_HOST_PER_SECOND = 30

/** Connections at once (libp2p's default): past it, libp2p refuses inbound ones. */
export const MAX_CONNECTIONS = 300

/** How often libp2p's connection monitor pings every connection (its default), whether or not the last ping has come back. */
export const MONITOR_PING_INTERVAL = 10 * second

/**
 * Ping streams at once on one connection, each way: the monitor's, one an
 * interval for as long as the timeout floor lets a ping last, the exit
 * liveness check's two (relay/exit-liveness.ts), and room to spare. Opening
 * one past the limit fails, and the monitor aborts the connection for that
 * failure as for a ping that timed out: with a limit of 2, a connection
 * whose pings took over 20 s was cut with every tunnel on it, however long
 * the floor.
 */
export const PING_STREAMS = Math.ceil(PING_TIMEOUT_FLOOR / MONITOR_PING_INTERVAL) + 2 + 8

/** A relay data limit no circuit reaches (2^63 - 1 bytes). */
const NO_DATA_LIMIT = 2n ** 63n - 1n
/** The longest timer Node.js keeps (about 24.8 days); a longer AbortSignal.timeout fires at once. */
const NO_DURATION_LIMIT_MS = 2 ** 31 - 1

export interface BuildLibp2pOptions {
  privateKey: PrivateKey
  config: SparebandConfig
  /** Extra services (tunnel exit, ingress, accounting) wired in by the node. */
  services?: Record<string, (components: any) => unknown>
  /** How DNS names are looked up before a dial on the public network: the system's resolver (a test gives names of its own). */
  dnsLookup?: LookupAll
  /** A connection or stream ended for a length prefix longer than any frame needs (frame-guard.ts). */
  onFramingRefused?: OnFramingRefused
}

/**
 * What libp2p itself listens on. The named relays (`<relay>/p2p-circuit`)
 * are left to the peer keeper, which listens on them once they answer (a
 * named relay that is down would stop libp2p's start) and redials them.
 * A node that names one also searches for relays (`/p2p-circuit`): it then
 * holds reservations on other relays it meets as well, and stays
 * reachable through those while the named relay is down. One that names
 * none and that others can dial (`searchRelays: false`) does not search.
 * The search is `/p2p-circuit` once per relay to reserve on
 * (`reservations`, network.relay_reservations): each such listener of
 * libp2p's relay transport holds one reservation, on a relay the others
 * do not hold.
 */
export function libp2pListen (listen: string[], options: { searchRelays?: boolean, reservations?: number } = {}): string[] {
  const named = new Set(namedRelays(listen).map(a => `${a}/p2p-circuit`))
  const own = listen.filter(a => !named.has(a) && a !== '/p2p-circuit')
  const search = named.size > 0 || (listen.includes('/p2p-circuit') && options.searchRelays !== false)
  return search ? [...own, ...searchListeners(options.reservations)] : own
}

/** The addresses the config gives the node to dial: its bootstrap peers' and its named relays'. */
export function givenAddresses (config: Pick<SparebandConfig, 'listen' | 'network'>): string[] {
  return [...namedRelays(config.listen), ...config.network.bootstrap]
}

/** The relays a listen list names (`<relay>/p2p-circuit`), as the relays' own multiaddrs. */
export function namedRelays (listen: string[]): string[] {
  return listen.filter(a => a.endsWith('/p2p-circuit') && a !== '/p2p-circuit').map(a => a.slice(0, -'/p2p-circuit'.length))
}

/**
 * The public STUN servers of network.stun_servers "auto" on a public
 * network: @libp2p/webrtc's own defaults (it exports none), named here so
 * that the node's config and docs say which hosts a WebRTC connection asks.
 */
export const PUBLIC_STUN_SERVERS = [
  'stun:stun.l.google.com:19302',
  'stun:global.stun.twilio.com:3478',
  'stun:stun.cloudflare.com:3478',
  'stun:stun.services.mozilla.com:3478'
]

/**
 * The STUN servers WebRTC connections ask (network.stun_servers). A local
 * testnet asks none: its machines meet at their own addresses, and nothing
 * of a testnet should reach hosts on the Internet.
 */
export function stunServers (network: Pick<SparebandConfig['network'], 'stun_servers' | 'local_testnet'>): string[] {
  if (network.stun_servers !== 'auto') return network.stun_servers
  return network.local_testnet ? [] : PUBLIC_STUN_SERVERS
}

/**
 * kad-dht's clientMode for network.dht_server: "auto" is kad-dht's own
 * rule (a server while the node has a public address: one it listens on or
 * announces, or one AutoNAT confirmed), except in a local testnet, where
 * every address is private and a client-only network could find nothing.
 */
export function dhtClientMode (network: Pick<SparebandConfig['network'], 'dht_server' | 'local_testnet'>): boolean | undefined {
  if (network.dht_server === 'auto') return network.local_testnet ? false : undefined
  return !network.dht_server
}

/** Streams each way on one connection: a consumer's tunnels, warm streams and receipts to an exit, with room for the rest. */
export const MAX_STREAMS_PER_CONNECTION = 4096 + 256

/**
 * The node's stream muxer: yamux with window updates at half the window
 * (yamux-window.ts), a clock of when bytes last came in (silent-connections.ts),
 * and as many streams allowed before the connection is ready as after.
 *
 * The muxer holds the streams a peer opens before this side has finished
 * setting up the connection ("early streams"), and @libp2p/utils ends the
 * whole connection past 10 of them. A consumer that finished its side first
 * opens its burst at once (its tunnels, warm streams, identify, a receipt
 * stream): on a loaded exit, 32 tunnels asked together of an exit the
 * consumer had just dialled lost the connection, every one of them, in 2 of
 * 3 tries. A peer can open as many streams right after, so this bound
 * guards nothing the stream limit does not.
 */
export function nodeStreamMuxer (): (components: { logger: ComponentLogger }) => StreamMuxerFactory {
  return withHearingClock(batchedYamux({
    maxInboundStreams: MAX_STREAMS_PER_CONNECTION,
    maxOutboundStreams: MAX_STREAMS_PER_CONNECTION,
    maxEarlyStreams: MAX_STREAMS_PER_CONNECTION,
    streamOptions: { maxReadBufferLength: STREAM_READ_BUFFER, maxStreamWindowSize: YAMUX_MAX_WINDOW }
  }))
}

/** Whether `addr` names its host (/dns, /dns4, /dns6, /dnsaddr) rather than giving its IP. */
function isNamed (addr: Multiaddr): boolean {
  return addr.getComponents().some(c => c.name.startsWith('dns'))
}

/** `gater` that also refuses the addresses of relays found gone (gone-peers.ts). */
function withGonePeers (gater: Pick<ConnectionGater, 'denyDialMultiaddr'>, gone: GonePeers): Pick<ConnectionGater, 'denyDialMultiaddr'> {
  const denied = gater.denyDialMultiaddr
  return { denyDialMultiaddr: async (addr: Multiaddr) => gone.denyDialMultiaddr(addr) || (await denied?.(addr)) === true }
}

export function libp2pOptions ({ privateKey, config, services = {}, dnsLookup, onFramingRefused }: BuildLibp2pOptions): Libp2pOptions<any> {
  const local = config.network.local_testnet
  // how what peers send is framed on each protocol, for the frame guards
  const framing = libp2pFraming([config.network.dht_protocol])
  // written by the routing's discovery, read by the peer store's address filter: a service, so both reach the one
  const advertisedRelays = new AdvertisedRelays()
  // circuits through a relay found silent are dialled after the others (silent-relays.ts)
  const silentRelays = new SilentRelays()
  // the addresses of relays found gone are not dialled for a while (gone-peers.ts)
  const gonePeers = new GonePeers()
  // the resolver adds what the given addresses' names resolve to, which the gater lets through
  const given = new GivenAddresses(givenAddresses(config))
  // a node others can dial needs no relay: its search would take slots on
  // every relay it meets (two each), which exits behind NAT need; should it
  // stop being dialable, relay-search.ts starts one
  const listen = libp2pListen(config.listen, { searchRelays: local || !listensPublicly(config.listen, config.announce), reservations: config.network.relay_reservations })
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (config.network.bootstrap.length > 0) {
    peerDiscovery.push(bootstrap({ list: config.network.bootstrap, timeout: 100 }))
  }
  const dhtSenders = new DhtSenders()
  // libp2p's in-memory default, with the DHT's records and provider entries bounded, in all and per sending peer (dht-datastore.ts)
  const datastore = new BoundedDhtDatastore({ senders: dhtSenders, recordAuthor: capacityAdAuthor, self: peerIdFromPrivateKey(privateKey).toString(), keepHeld: heldAdIsNewer })
  return {
    privateKey,
    datastore,
    nodeInfo: { name: AGENT_NAME, version: VERSION, userAgent: formatAgent(VERSION, config.region, config.exit.enabled) },
    addresses: {
      listen,
      announce: config.announce
    },
    // the guards end connections and streams at a length prefix longer than any frame needs (frame-guard.ts):
    // on every transport's connections and on every stream, the data channels of WebRTC's included
    transports: [
      guardedTransport(tcp(), framing, onFramingRefused),
      // webrtc-direct needs no STUN: its listener is at a public address and
      // answers a dialler at the address its checks come from, yet
      // @libp2p/webrtc's default sends every such connection, dialled or
      // taken, to four public STUN servers; WebRTC through a relay needs them
      // to cross NATs (network.stun_servers)
      guardedTransport(webRTCDirect({ rtcConfiguration: { iceServers: [] } }), framing, onFramingRefused),
      guardedTransport(webRTC({ rtcConfiguration: { iceServers: stunServers(config.network).map(urls => ({ urls })) } }), framing, onFramingRefused),
      guardedTransport(circuitRelayTransport({ reservationCompletionTimeout: 10 * second }), framing, onFramingRefused)
    ],
    connectionEncrypters: [guardedEncrypter(noise({ crypto: noiseCrypto }), onFramingRefused)],
    streamMuxers: [guardedMuxer(nodeStreamMuxer(), framing, onFramingRefused)],
    connectionMonitor: { pingInterval: MONITOR_PING_INTERVAL, pingTimeout: { minTimeout: PING_TIMEOUT_FLOOR } },
    connectionManager: {
      // its pruner closes next to nothing here: connection-trimmer.ts makes the room
      maxConnections: MAX_CONNECTIONS,
      // many testnet nodes share one IP: libp2p's default of 5 inbound
      // connections per second per host resets a burst of bootstrap dials.
      // And every consumer's connection to an exit behind NAT comes from its
      // relay's address: 5 of a burst of 12 got through, the rest timed out
      // in their handshake. (An allow list for the relays would let every
      // connection without an IP address, WebRTC's, past all limits.)
      inboundConnectionThreshold: local ? Infinity : INBOUND_PER_HOST_PER_SECOND,
      // connections in their handshake at once (libp2p's default is 10)
      maxIncomingPendingConnections: 64,
      addressSorter: silentRelays.compare,
      // on the public network DNS names are looked up before the dial, so the gater sees the addresses dialled (private-dials.ts)
      ...(local ? {} : { resolvers: { dnsaddr: dnsaddrResolver, dns: new DnsNameResolver({ given, lookup: dnsLookup }) } })
    },
    // on the public network no private address but the addresses the node was given (private-dials.ts)
    connectionGater: withGonePeers(privateDialGater({ publicOnly: !local, given }), gonePeers),
    peerDiscovery,
    // other peers' private addresses on the public network, and exits' circuits through relays they left (peer-address-filter.ts)
    peerStore: { addressFilter: peerAddressFilter(peerIdFromPrivateKey(privateKey), { publicOnly: !local, advertisedRelays }) },
    services: {
      identify: identify(),
      identifyPush: identifyPush(),
      ping: ping({ maxOutboundStreams: PING_STREAMS, maxInboundStreams: PING_STREAMS }),
      silentConnections: silentConnections(),
      // the relays this node is reached through, and those found silent, are judged sooner (relay-watch.ts)
      relayWatch: relayWatch({ gonePeers, alsoWatch: relay => silentRelays.isMarked(relay) }),
      gonePeers: (components: { events: TypedEventTarget<Libp2pEvents> }) => gonePeers.withEvents(components.events),
      relaySearch: relaySearch({ mode: listen.includes('/p2p-circuit') ? 'from start' : config.listen.includes('/p2p-circuit') ? 'if not public' : 'never', reservations: config.network.relay_reservations }),
      advertisedRelays: () => advertisedRelays,
      silentRelays: (components: { events: TypedEventTarget<Libp2pEvents> }) => silentRelays.withEvents(components.events),
      // what status shows of the DHT's store
      dhtStore: () => datastore,
      // where the transports listen: libp2p's own addresses are the announced ones when announce is set
      listenAddresses: (components: { transportManager: { getAddrs: () => Multiaddr[] } }): ListenAddresses => ({ get: () => components.transportManager.getAddrs() }),
      autoNAT: autoNAT(),
      // a public IPv4 address of this machine's own is one from the start, before any AutoNAT dial-back
      ownPublicAddresses: ownPublicAddresses(),
      dcutr: dcutr(),
      // before kad-dht registers its handler: tells the datastore which peer sent each write
      // (counted by IP address on the public network: peer ids are free; in a local testnet every node shares one)
      dhtSenderTags: dhtSenderTags({ protocols: [config.network.dht_protocol], senders: dhtSenders, byAddress: !local }),
      dht: kadDHT({
        protocol: config.network.dht_protocol,
        clientMode: dhtClientMode(config.network),
        // the default mapper drops 127.x and 10.x addresses, which leaves a
        // loopback testnet with peers it cannot dial
        peerInfoMapper: local ? passthroughMapper : removePrivateAddressesMapper,
        // capacity ads live under /spareband/cap/<peer id>: signed, fresh, newest seq wins
        validators: { spareband: capacityValidator },
        selectors: { spareband: capacitySelector }
      }),
      // js-libp2p redials neither a lost relay nor, after start, the bootstrap peers
      keeper: peerKeeper({
        relays: namedRelays(config.listen),
        bootstrap: config.network.bootstrap,
        maxDelayMs: config.network.redial_max_seconds * second,
        // a name is looked up before the dial (on the public network), and the pause knows the IP: asked by the peer then
        pausedFor: addr => Math.max(gonePeers.pausedFor(addr), isNamed(addr) ? gonePeers.pausedForPeer(peerIdOf(addr) ?? '') : 0)
      }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        allowedTopics: [config.network.receipts_topic, config.network.reputation_topic],
        // not over relayed connections: every peer reached through one relay has
        // the relay's IP to gossipsub, whose colocation penalty (past 10 peers
        // on one IP) then graylisted the exits behind a busy relay; and gossip
        // would spend the circuits' data limit. A node behind NAT gossips over
        // its direct connections (to its relay, at least)
        runOnLimitedConnection: false,
        // rejected receipts count against their sender (gossipsub scores no topic by default)
        scoreParams: gossipScoreParams([config.network.receipts_topic, config.network.reputation_topic], local)
      }),
      ...(config.relay.enabled !== false
        ? {
            relay: relayService({
              reservations: {
                maxReservations: config.relay.max_reservations,
                // 0 in either limit means "no limit" to the operator. The
                // relay applies both limits or neither, and takes 0 literally
                // (a 0-byte or 0-ms circuit), so an unlimited one is the most
                // it can hold: one limit of 0 must not switch off the other
                defaultDataLimit: config.relay.data_limit_mb > 0 ? BigInt(Math.floor(config.relay.data_limit_mb * MiB)) : NO_DATA_LIMIT,
                defaultDurationLimit: config.relay.duration_limit_seconds > 0 ? Math.floor(config.relay.duration_limit_seconds * second) : NO_DURATION_LIMIT_MS,
                applyDefaultLimit: config.relay.data_limit_mb > 0 || config.relay.duration_limit_seconds > 0
              }
            }, { whilePublic: config.relay.enabled === 'auto' && !local })
          }
        : {}),
      ...services
    }
  }
}

/** What the native WebRTC library (node-datachannel) throws when its UDP port cannot be bound, and no more: the errno is only in its own log. */
const UDP_MUX_FAILURE = 'Failed to register ICE UDP mux listener'

const WEBRTC_DIRECT = /^\/ip([46])\/([^/]+)\/udp\/(\d+)\/webrtc-direct(\/|$)/

/** What the listen errors name: the setting to change. */
const LISTEN_WHAT = "the node's listen address (listen / --listen)"

function listenInUse (addr: string): AddressInUseError {
  return new AddressInUseError(`${LISTEN_WHAT}: ${addr} is in use`, { address: addr })
}

/**
 * Binds the UDP port of each webrtc-direct listen address for a moment,
 * before libp2p starts, so that a port in use is an AddressInUseError
 * naming the address and its setting, as a TCP port in use is. Left to
 * libp2p, the native WebRTC library printed its own WARN/ERROR/FATAL lines
 * and threw `Failed to register ICE UDP mux listener`, without the address
 * or the errno, out of libp2p's stop (which then stopped half-way). An
 * IPv4 address that cannot be bound for another reason (not this
 * machine's) fails the start here too, as it would in libp2p; an IPv6 one
 * is left to libp2p, which does without IPv6 when no IPv6 address works.
 * Port 0 is any free one. Bound as the native library binds, without
 * SO_REUSEADDR (a holder's SO_REUSEADDR does not let it in either), and
 * IPv6 only, so an IPv4 holder does not count against an IPv6 address.
 */
export async function checkUdpListenPorts (listen: readonly string[]): Promise<void> {
  for (const addr of listen) {
    const m = WEBRTC_DIRECT.exec(addr)
    if (m == null || Number(m[3]) === 0) continue
    const ip4 = m[1] === '4'
    const socket = createSocket({ type: ip4 ? 'udp4' : 'udp6', ipv6Only: !ip4 })
    const failed = await new Promise<NodeJS.ErrnoException | undefined>(resolve => {
      socket.once('error', resolve)
      socket.bind(Number(m[3]), m[2], () => { resolve(undefined) })
    })
    await new Promise<void>(resolve => { try { socket.close(() => { resolve() }) } catch { resolve() } })
    if (failed?.code === 'EADDRINUSE') throw listenInUse(addr)
    if (failed != null && ip4) throw new Error(`${LISTEN_WHAT}: ${addr}: ${failed.message}`, { cause: failed })
  }
}

/**
 * libp2p's UnsupportedListenAddressesError as an operator can act on it:
 * the address and why, without the stack traces and the advice about
 * libp2p's own options that its message carries. A port in use is an
 * AddressInUseError, as the proxies' and the control API's are. The native
 * WebRTC library's bare failure (its UDP port taken between
 * checkUdpListenPorts and the bind, or refused for another reason) names
 * the webrtc-direct listen addresses of `listen`, since it names none.
 */
export function explainListenFailure (err: unknown, listen: readonly string[] = []): unknown {
  if ((err as Error | undefined)?.message === UDP_MUX_FAILURE) {
    const udp = listen.filter(a => WEBRTC_DIRECT.test(a))
    if (udp.length === 0) return err
    return new Error(`${LISTEN_WHAT}: ${udp.join(', ')}: its UDP port could not be opened (the WebRTC library says: ${UDP_MUX_FAILURE}; its log above says why)`, { cause: err })
  }
  if ((err as Error | undefined)?.name !== 'UnsupportedListenAddressesError') return err
  // the message lists "  <multiaddr>: <error>" for each address, stack lines after
  const failures = [...String((err as Error).message).matchAll(/^\s+(\/\S+): (?:\w*Error: )?(.+)$/gm)].map(m => ({ addr: m[1], why: m[2] }))
  if (failures.length === 0) return err
  const inUse = failures.find(f => f.why.includes('EADDRINUSE'))
  if (inUse != null) return listenInUse(inUse.addr)
  return new Error(`${LISTEN_WHAT}: ${failures.map(f => `${f.addr}: ${f.why}`).join('; ')}`, { cause: err })
}

/** The addresses the node's transports listen on (its `listenAddresses` service). */
export interface ListenAddresses {
  get: () => Multiaddr[]
}

export async function buildLibp2p (options: BuildLibp2pOptions): Promise<Libp2p<ServiceMap>> {
  return pacedLibp2p({ ...libp2pOptions(options), start: false })
}

/**
 * createLibp2p with the random walk paced before anything starts it: with
 * every known peer unreachable, the relay search's walk spun a core (see
 * walk-throttle.ts); and with a stop() that leaves no timer to keep the
 * process up (libp2p-stop-timers.ts). Every libp2p made from libp2pOptions
 * goes through here, tests' too.
 */
export async function pacedLibp2p<T extends ServiceMap> (options: Libp2pOptions<T>): Promise<Libp2p<T>> {
  const node = await createLibp2p({ ...options, start: false })
  throttleRandomWalk(node)
  stopWithoutLeftoverTimers(node)
  if (options.start !== false) await node.start()
  return node
}
