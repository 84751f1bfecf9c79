/**
 * Node configuration: defaults in one place, then `config.toml` in the data
 * directory, then `SPAREBAND_*` environment variables, then command-line
 * flags. Every layer is validated by one zod schema; a bad value produces a
 * `ConfigError` that names where it came from, the key, the value and what is
 * allowed.
 *
 * Keys are snake_case everywhere (file, library and API) so an error message
 * names the key exactly as the operator writes it in `config.toml`.
 */

import { modeOpenToOthers, readableByOthersWarning } from './file-modes.ts'
import { isIP } from 'node:net'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { homedir } from 'node:os'
import { parse as parseToml, TomlError } from 'smol-toml'
import { z } from 'zod'
import { multiaddr } from '@multiformats/multiaddr'
import { P2P, TCP, WebRTC, WebRTCDirect } from '@multiformats/multiaddr-matcher'
import { peerIdFromString } from '@libp2p/peer-id'
import { ConfigError, describeFsError } from '../errors.ts'
import { isValidRegion, normalizeRegion, subdivisionProblem } from '../routing/regions.ts'
import { parseDeniedCidr, parseDeniedDomain } from '../relay/exit-policy.ts'
import { parsePortList } from '../relay/ports.ts'
import { parseSchedule } from '../relay/schedule.ts'
import { isLoopback as isLoopbackHost } from '../relay/listen-address.ts'
import { DEFAULT_WARM_PER_EXIT } from '../relay/warm-streams.ts'
import { DEFAULT_GOSSIP_RETENTION_MS, DEFAULT_REPUTATION_INTERVAL_MS } from '../accounting/constants.ts'
import { day, second } from '../constants.ts'

const PORT_RANGE = 'must be a port from 0 to 65535 (0 picks a free one)'
const port = z.number().int(PORT_RANGE).min(0, PORT_RANGE).max(65535, PORT_RANGE)

/**
 * An address this machine binds a server to: an IP address as Node's
 * net.isIP() takes it (written out, a zone allowed: fe80::1%eth0.100), or
 * "localhost". A name would be looked up (a DNS query for a bind), and a
 * typo in it was taken without a word until the bind failed; "[::1]" and
 * "127.1" passed a looser check and then failed to bind, or bound through
 * getaddrinfo.
 */
const bindHost = z.string().refine(h => h === 'localhost' || isIP(h) !== 0, 'expected an IP address of this machine (127.0.0.1, ::1, or 0.0.0.0 for every interface, written out: no brackets) or "localhost"')

const portList = z.array(z.union([z.string(), z.number()])).superRefine((value, ctx) => {
  try {
    // no ports at all (`--exit-ports=`) would advertise an exit that refuses every tunnel
    if (parsePortList(value).length === 0) ctx.addIssue({ code: 'custom', message: 'no ports: list some (e.g. 80,443 or reduced), or turn the exit off with --no-supply (exit.enabled = false)' })
  } catch (err: any) {
    ctx.addIssue({ code: 'custom', message: err.message })
  }
})

const schedule = z.string().superRefine((value, ctx) => {
  try {
    parseSchedule(value)
  } catch (err: any) {
    ctx.addIssue({ code: 'custom', message: err.message })
  }
})

const region = z.string().transform(normalizeRegion).superRefine((value, ctx) => {
  if (!isValidRegion(value)) ctx.addIssue({ code: 'custom', message: subdivisionProblem(value) ?? 'not an ISO 3166-1 alpha-2 country code, optionally with an ISO 3166-2 subdivision (e.g. "de", "us-ca")' })
})

/** Runs `parse` on each entry; the first entry's error, as an issue of `ctx`. */
function checkEntries<T> (entries: T[], parse: (entry: T) => unknown, ctx: z.RefinementCtx): void {
  for (const entry of entries) {
    try {
      parse(entry)
    } catch (err: any) {
      ctx.addIssue({ code: 'custom', message: err.message })
      return
    }
  }
}

/** A list checked entry by entry with the parser its consumer uses, so whatever passes here also passes there. */
const checkedList = (parse: (entry: string) => unknown) => z.array(z.string()).superRefine((value, ctx) => { checkEntries(value, parse, ctx) })

/**
 * Multiaddrs are checked here, not where libp2p meets them: there a bad
 * listen or bootstrap address stopped the node with the parser's words
 * alone (no key, no value), and a bad announce address threw from inside
 * libp2p, a stack trace.
 */
function parseAddress (entry: string): ReturnType<typeof multiaddr> {
  let addr: ReturnType<typeof multiaddr>
  try {
    addr = multiaddr(entry)
  } catch (err: any) {
    throw new Error(`"${entry}" is not a multiaddr (${err.message})`)
  }
  // "" and "/" parse as the empty multiaddr: announced, it left only /p2p/<id>; listened on, libp2p's stack trace
  if (addr.getComponents().length === 0) throw new Error(`"${entry}" is an empty multiaddr: name an address, or leave the entry out`)
  return addr
}

/** The peer id at the end of `addr` (its last /p2p/), checked; undefined when there is none. */
function peerOf (entry: string, addr: ReturnType<typeof multiaddr>): string | undefined {
  const id = addr.getComponents().findLast(c => c.name === 'p2p')?.value
  if (id == null) return undefined
  try {
    peerIdFromString(id)
  } catch (err: any) {
    throw new Error(`"${entry}" names no valid peer id ("${id}": ${err.message})`)
  }
  return id
}

/**
 * What the node's transports (libp2p.ts) listen on, as their own listen
 * filters match it: an address none of them takes failed libp2p's start
 * (exit 1, its stack trace), or was silently left out beside one that works.
 * Circuit relay addresses are checked apart, in parseListenAddress.
 */
const LISTENABLE = [TCP, WebRTCDirect, WebRTC]
const LISTENABLE_WORDS = 'TCP (/ip4/0.0.0.0/tcp/4001), WebRTC Direct (/ip4/0.0.0.0/udp/4001/webrtc-direct), WebRTC (/webrtc) and circuit relays (/p2p-circuit, or <relay multiaddr>/p2p/<peer id>/p2p-circuit)'

/** A listen address; a named relay (`<relay>/p2p-circuit`) must name the relay's peer, or nothing ever dials it. */
function parseListenAddress (entry: string): void {
  const addr = parseAddress(entry)
  if (entry === '/p2p-circuit') return
  if (entry.endsWith('/p2p-circuit')) {
    const relay = parseAddress(entry.slice(0, -'/p2p-circuit'.length))
    if (!P2P.exactMatch(relay)) throw new Error(`"${entry}" is no address this node can listen on: the node listens on ${LISTENABLE_WORDS}`)
    if (peerOf(entry, relay) == null) throw new Error(`"${entry}" names a relay without its peer id: write "<relay multiaddr>/p2p/<peer id>/p2p-circuit"`)
    return
  }
  if (!LISTENABLE.some(m => m.exactMatch(addr))) throw new Error(`"${entry}" is no address this node can listen on: the node listens on ${LISTENABLE_WORDS}`)
  peerOf(entry, addr)
}

/** A peer to dial: libp2p's bootstrap and the node's redials skip an address without `/p2p/<peer id>`, silently. */
function parsePeerAddress (entry: string): void {
  if (peerOf(entry, parseAddress(entry)) == null) throw new Error(`"${entry}" does not end in /p2p/<peer id>, so no one would dial it`)
}

/**
 * A STUN server for WebRTC's NAT traversal: `stun:host[:port]`, the host a
 * name or an IPv4 address. Only what the WebRTC library (node-datachannel)
 * takes: it throws on `stuns:` and on a bracketed IPv6 address when a
 * connection is made, so one such entry failed every WebRTC connection,
 * with nothing in the node's log.
 */
export function parseStunServer (entry: string): void {
  const m = /^stun:([A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(entry)
  if (m == null) throw new Error(`"${entry}" is not a STUN server: write stun:host or stun:host:port, the host a name or an IPv4 address, e.g. "stun:stun.example.org:3478"`)
  if (m[2] != null && (Number(m[2]) < 1 || Number(m[2]) > 65535)) throw new Error(`"${entry}" has no valid port: ${m[2]} is not from 1 to 65535`)
}

/** network.stun_servers: "auto", or a list whose every entry is checked (a union would say only "expected one of", not which entry is wrong). */
const stunServerSetting = z.custom<'auto' | string[]>(() => true).superRefine((value, ctx) => {
  if (value === 'auto') return
  if (!Array.isArray(value)) {
    ctx.addIssue({ code: 'custom', message: `expected "auto" or a list of STUN servers (["stun:stun.example.org:3478"]), not ${JSON.stringify(value)}` })
    return
  }
  checkEntries<unknown>(value, entry => {
    if (typeof entry !== 'string') throw new Error(`${JSON.stringify(entry)} is not a STUN server: write it as a string, e.g. "stun:stun.example.org:3478"`)
    parseStunServer(entry)
  }, ctx)
})

const nonNegative = z.number().min(0)

/**
 * The longest delay a Node.js timer takes, in seconds (2^31 - 1 ms, about
 * 24.8 days). Beyond it setTimeout() fires after 1 ms instead, with only a
 * warning: with a longer connect timeout every dial that takes more than
 * a millisecond (any target beyond this machine) would time out.
 */
export const MAX_TIMER_SECONDS = 2_147_483
/** A timeout in seconds, at least `min`, that fits a timer. */
const timeoutSeconds = (min: number) => z.number().min(min).max(MAX_TIMER_SECONDS, `must be at most ${MAX_TIMER_SECONDS} (about 24.8 days), the longest timer Node.js keeps`)

/** An interval in seconds that fits a timer (see MAX_TIMER_SECONDS), above 0. */
const intervalSeconds = z.number().positive().max(MAX_TIMER_SECONDS, `must be at most ${MAX_TIMER_SECONDS} (about 24.8 days), the longest timer Node.js keeps`)

/**
 * A rate cap in Mbps: 0 for none. A token bucket waits bytes / rate, so a
 * cap under a kilobit per second makes a chunk's wait overflow the timer
 * (and the cap vanish), and past a terabit per second it caps nothing.
 */
const rateCapMbps = z.number().refine(v => v === 0 || (v >= 0.001 && v <= 1_000_000), 'must be 0 (no cap) or from 0.001 to 1000000 Mbps')

/** The longest gossip retention taken, in days (a century): beyond it, use 0. */
export const MAX_GOSSIP_RETENTION_DAYS = 36_500

/**
 * Days third parties' sessions are kept after their last receipt; 0 keeps
 * them for ever. At least a day: a session still in use is kept because its
 * exit gossips it every minute or so, and a node cut off for longer than
 * the retention prunes such sessions and then refuses their next receipts
 * (Ledger.pruneGossip). At most a century, so it stays a number of ms.
 */
const gossipRetentionDays = z.number().refine(v => v === 0 || (v >= 1 && v <= MAX_GOSSIP_RETENTION_DAYS), `must be 0 (keep them for ever) or from 1 to ${MAX_GOSSIP_RETENTION_DAYS} days`)

/** A switch with a third setting, "auto", that the node decides (dht_server, relay.enabled). */
const onOffAuto = z.union([z.boolean(), z.literal('auto')])

/** 0 would advertise an exit that is always busy: the way to take no tunnels is to turn the exit off. */
const tunnelLimit = z.number().int().min(1, 'must be at least 1; to take no tunnels, turn the exit off with --no-supply (exit.enabled = false)')

export const configSchema = z.strictObject({
  /** Where this node exits traffic: ISO 3166-1 alpha-2, optionally with a subdivision. */
  region: region.optional(),
  network: z.strictObject({
    /** Network name, shown in status; peers of different networks do not share a DHT. */
    name: z.string().min(1),
    dht_protocol: z.string().regex(/^\/[\w./-]+$/, 'must look like a protocol id, e.g. "/spareband/kad/1.0.0"'),
    bootstrap: checkedList(parsePeerAddress),
    receipts_topic: z.string().min(1),
    reputation_topic: z.string().min(1),
    /** Run the DHT in server mode (servers are the only peers kad-dht returns from lookups); "auto": while the node has a public address (always in a local testnet). */
    dht_server: onOffAuto,
    /** Local testnets on one IP: drop gossipsub's IP colocation penalty and per-host dial limits. */
    local_testnet: z.boolean(),
    /** The longest wait between redials of a lost relay (one in `listen`), or of the bootstrap peers while the node has no peer; the first is 1 s and they double. */
    redial_max_seconds: timeoutSeconds(1),
    /**
     * The STUN servers WebRTC connections (not webrtc-direct's) ask for this
     * node's public address; "auto": libp2p's public ones, none in a local
     * testnet. `[]` asks none (WebRTC then reaches only peers on this
     * node's own networks).
     */
    stun_servers: stunServerSetting,
    /**
     * How many relays a node that searches for them (`/p2p-circuit` in
     * `listen`) reserves on, besides the relays `listen` names. More than
     * one keeps an exit behind NAT reachable through another while a relay
     * it used is gone.
     */
    relay_reservations: z.number().int().min(1, 'must be at least 1; to reserve on no relay, leave /p2p-circuit out of listen').max(8, 'must be at most 8: each takes a slot on a relay that other exits behind NAT need')
  }),
  listen: checkedList(parseListenAddress),
  announce: checkedList(entry => { parseAddress(entry) }),
  api: z.strictObject({
    host: bindHost,
    port
  }),
  proxy: z.strictObject({
    enabled: z.boolean(),
    host: bindHost,
    socks_port: port,
    http_port: port,
    /** Region used when the proxy user name does not name one. */
    default_region: region.optional(),
    /** Tunnel streams kept open ahead of need per exit in use, so a new tunnel skips stream negotiation; 0 = off. */
    warm_streams: z.number().int().min(0).max(16),
    /** Credentials for the local proxies; required when they bind beyond loopback. */
    username: z.string().optional(),
    password: z.string().optional()
  }),
  exit: z.strictObject({
    enabled: z.boolean(),
    capacity_mbps: nonNegative,
    allowed_ports: portList,
    allow_private_targets: z.boolean(),
    /** More ranges to refuse, e.g. "203.0.113.0/24", "2001:db8::/32"; a bare address is that one host. */
    denied_cidrs: checkedList(parseDeniedCidr),
    /** Domains to refuse with every name under them: "example.com" (also written ".example.com" or "*.example.com"). */
    denied_domains: checkedList(parseDeniedDomain),
    /** Total rate caps across all tunnels, megabits per second; 0 = unlimited. */
    upload_mbps: rateCapMbps,
    download_mbps: rateCapMbps,
    /** Rate cap per consumer, both directions each; 0 = unlimited. */
    per_consumer_mbps: rateCapMbps,
    /** Open tunnels at once, all consumers together; at least 1 (turn the exit off with enabled = false). */
    max_tunnels: tunnelLimit,
    max_tunnels_per_consumer: tunnelLimit,
    /** Data quotas in GB (10^9 bytes), both directions counted; 0 = unlimited. */
    daily_quota_gb: nonNegative,
    monthly_quota_gb: nonNegative,
    /** When the exit shares: e.g. "mon-fri 00:00-07:00, sat-sun all"; "always" = no limit. */
    schedule,
    idle_timeout_seconds: timeoutSeconds(1),
    connect_timeout_seconds: timeoutSeconds(0.1),
    price_per_gb: nonNegative
  }),
  accounting: z.strictObject({
    /** Meter tunnels, exchange receipts, keep the ledger; off = this node neither pays nor is paid. */
    enabled: z.boolean(),
    /** As an exit: refuse new tunnels from consumers whose balance (credits) is not above this. */
    credit_limit: z.number(),
    /** As a consumer: open no tunnel, and end the open ones, while our own balance (credits, as our ledger has it) is not above this. */
    stop_at_balance: z.number(),
    /** Starting credits of an identity with a valid proof of work. */
    allowance: nonNegative,
    /** As an exit: hold a consumer's traffic while more than this (MiB) is carried but unsigned. */
    unsigned_threshold_mb: z.number().min(0.0625),
    /** As a consumer: sign a receipt every this many MiB... */
    receipt_interval_mb: z.number().positive(),
    /** ...or this many seconds, whichever comes first. */
    receipt_interval_seconds: intervalSeconds,
    /** Leading zero bits of the identity proof of work (S/Kademlia style). */
    pow_difficulty: z.number().int().min(0).max(40),
    /** As an exit: gossip a long session's receipt at most this often. */
    publish_interval_seconds: intervalSeconds,
    /** Keep third parties' sessions (heard of over gossip) this many days after their last receipt; 0 = for ever. */
    gossip_retention_days: gossipRetentionDays,
    /** As a consumer: report on the exits it used at most this often (reputation gossip); 0 = never (others' reports still count). At least 120 s: receivers take a reporter's reports at least 60 s apart, and a timer's tick may come a few ms early. */
    reputation_interval_seconds: z.number().refine(v => v === 0 || (v >= 120 && v <= 86_400), 'must be 0 (never report) or from 120 to 86400 seconds')
  }),
  relay: z.strictObject({
    /** Act as a circuit relay for other peers; "auto": while the node has a public address (always in a local testnet). */
    enabled: onOffAuto,
    max_reservations: z.number().int().min(0),
    /** Per relayed connection, both directions together; js-libp2p's 128 KiB default is far too low for tunnels. */
    data_limit_mb: nonNegative,
    /** 0: no time limit. */
    duration_limit_seconds: z.number().min(0).max(MAX_TIMER_SECONDS, `must be at most ${MAX_TIMER_SECONDS} (about 24.8 days), the longest timer Node.js keeps; 0 for no limit`)
  })
})

export type SparebandConfig = z.infer<typeof configSchema>
export type SparebandConfigInput = DeepPartial<SparebandConfig>

export type DeepReadonly<T> = T extends ReadonlyArray<infer U> ? ReadonlyArray<DeepReadonly<U>> : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T

/** Any part of T; lists may be read-only (a part of defaultConfig passed back in). */
export type DeepPartial<T> = T extends ReadonlyArray<infer U> ? readonly U[] : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T

/**
 * The defaults. Cloneable with `structuredClone`, and frozen (a write
 * throws): read them, or pass overrides as `config`. Values that are not
 * obvious say why.
 */
const defaults: SparebandConfig = {
  network: {
    name: 'spareband',
    dht_protocol: '/spareband/kad/1.0.0',
    bootstrap: [],
    receipts_topic: 'spareband/receipts/1',
    reputation_topic: 'spareband/reputation/1',
    // kad-dht's own rule: a server while the node has an address others can
    // dial (listened on, announced, or confirmed by AutoNAT), so a node
    // behind NAT does not sit in routing tables at an address nobody can
    // reach. In a local testnet every address is private, and "auto" is a
    // server (a network of clients could find nothing)
    dht_server: 'auto',
    local_testnet: false,
    // DEFAULT_REDIAL_MAX_MS in src/node/peer-keeper.ts says why
    redial_max_seconds: 60,
    stun_servers: 'auto',
    // two: when one relay dies, consumers reach an exit behind NAT through
    // the other at once, rather than after the exit noticed (up to 30 s),
    // reserved elsewhere and advertised that (about 40 s in all)
    relay_reservations: 2
  },
  listen: [
    '/ip4/0.0.0.0/tcp/4001',
    '/ip6/::/tcp/4001',
    '/ip4/0.0.0.0/udp/4001/webrtc-direct',
    // reserve a slot on any relay we are connected to, so exits behind NAT stay reachable
    '/p2p-circuit'
  ],
  announce: [],
  api: { host: '127.0.0.1', port: 7070 },
  proxy: {
    enabled: true,
    host: '127.0.0.1',
    socks_port: 1080,
    http_port: 3128,
    warm_streams: DEFAULT_WARM_PER_EXIT
  },
  exit: {
    enabled: true,
    capacity_mbps: 100,
    // the design: web traffic only unless the operator opens more (README, "Running an exit")
    allowed_ports: [80, 443],
    allow_private_targets: false,
    denied_cidrs: [],
    denied_domains: [],
    upload_mbps: 0,
    download_mbps: 0,
    per_consumer_mbps: 0,
    max_tunnels: 1024,
    max_tunnels_per_consumer: 256,
    daily_quota_gb: 0,
    monthly_quota_gb: 0,
    schedule: 'always',
    idle_timeout_seconds: 300,
    connect_timeout_seconds: 10,
    price_per_gb: 1
  },
  accounting: {
    enabled: true,
    credit_limit: 0,
    // the exits' default credit_limit: what they would refuse anyway, once they have heard of all our spending
    stop_at_balance: 0,
    // 1 GB at the default price of 1 credit/GB
    allowance: 1,
    unsigned_threshold_mb: 4,
    receipt_interval_mb: 1,
    receipt_interval_seconds: 5,
    // about 1M hashes: a second or so per identity, once
    pow_difficulty: 20,
    publish_interval_seconds: 60,
    // a month of the network's history; why, see DEFAULT_GOSSIP_RETENTION_MS
    gossip_retention_days: DEFAULT_GOSSIP_RETENTION_MS / day,
    // what this node saw of the exits it used, for the rest of the network
    reputation_interval_seconds: DEFAULT_REPUTATION_INTERVAL_MS / second
  },
  relay: {
    // as dht_server: a relay behind NAT hands out circuits nobody can dial
    // (src/node/public-relay-server.ts)
    enabled: 'auto',
    max_reservations: 32,
    // a 64 MB download plus noise/yamux overhead in both directions fits with room
    data_limit_mb: 1024,
    duration_limit_seconds: 3600
  }
}

// exported for apps and the CLI's help to read; a write would change every node made after it
deepFreeze(defaults)
/** The defaults, read-only: a write throws at run time and does not compile. */
export const defaultConfig: DeepReadonly<SparebandConfig> = defaults

function deepFreeze (value: unknown): void {
  if (value == null || typeof value !== 'object' || Object.isFrozen(value)) return
  for (const v of Object.values(value)) deepFreeze(v)
  Object.freeze(value)
}

/** Where each key's value came from, for error messages: dotted key -> source. */
export type SourceMap = Map<string, string>

export interface ConfigLayer {
  /** e.g. `/home/u/.spareband/config.toml`, `environment variable SPAREBAND_REGION`, `flag --region` */
  source: string | ((key: string) => string)
  values: SparebandConfigInput | Record<string, unknown>
}

/**
 * SPAREBAND_DATA_DIR, else ~/.spareband. Set but empty counts as unset (as
 * XDG_DATA_HOME does): an empty value, such as a unit file's unset
 * variable, would otherwise resolve to the working directory, and the node
 * would keep its key and ledger wherever it happened to be started.
 */
export function defaultDataDir (env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.SPAREBAND_DATA_DIR
  return dir != null && dir !== '' ? dir : join(homedir(), '.spareband')
}

/**
 * Reads `config.toml`. A missing file is an empty layer, unless the user
 * named it (`required`: `--config FILE`), where a typo in the path would
 * otherwise run the node on the defaults, without the operator's caps; a
 * file that does not parse is a ConfigError naming the file, the line and
 * column.
 */
export function readConfigFile (file: string, options: { required?: string } = {}): ConfigLayer {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT' && options.required != null) throw new ConfigError(`${file}: no such config file (named by ${options.required})`, { source: file })
    if (err.code === 'ENOENT') return { source: file, values: {} }
    throw new ConfigError(`${file}: cannot read config file${options.required != null ? ` (named by ${options.required})` : ''}: ${describeFsError(err)}`, { source: file })
  }
  try {
    return { source: file, values: parseToml(text) as Record<string, unknown> }
  } catch (err: any) {
    const where = err instanceof TomlError ? ` (line ${err.line}, column ${err.column})` : ''
    const first = String(err.message).split('\n')[0]
    throw new ConfigError(`${file}: not valid TOML${where}: ${first}`, { source: file })
  }
}

/**
 * A warning when the config file holds the proxies' password and others than
 * its owner can read it: init makes config.toml 0600, but one copied in
 * or written by an editor gets the mode of the day, and whoever reads the
 * password can use the node's proxies, on its credits. Undefined when the
 * file is private, has no password, is missing or unreadable, or on
 * Windows (no POSIX modes). As identity.ts's identityModeWarning.
 */
export function configModeWarning (file: string): string | undefined {
  const mode = modeOpenToOthers(file, 0o044)
  if (mode == null) return undefined
  let password: unknown
  try {
    password = (parseToml(readFileSync(file, 'utf8')) as { proxy?: { password?: unknown } }).proxy?.password
  } catch {
    return undefined
  }
  if (typeof password !== 'string' || password === '') return undefined
  return readableByOthersWarning(file, mode, 'can use this node\'s proxies and spend its credits', 'proxy.password')
}

/** One override that can come from the environment or a flag. */
interface Override {
  env: string
  key: string
  parse: (raw: string) => unknown
}

const list = (raw: string): string[] => raw.split(',').map(s => s.trim()).filter(s => s.length > 0)
const bool = (raw: string): unknown => {
  if (/^(1|true|yes|on)$/i.test(raw)) return true
  if (/^(0|false|no|off)$/i.test(raw)) return false
  return raw
}
/**
 * A number written in decimal (`12`, `-1.5`, `1e3`), or undefined. Number()
 * alone also takes `0x10`, `0b11`, `0o7` and surrounding blanks, so a
 * typo in a hex-looking value became a silently different setting.
 */
export function decimalNumber (raw: string): number | undefined {
  const text = raw.trim()
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text)) return undefined
  const n = Number(text)
  return Number.isFinite(n) ? n : undefined
}

const num = (raw: string): unknown => decimalNumber(raw) ?? raw

/** The environment variables the node reads, and the keys they set. */
export const ENV_OVERRIDES: Override[] = [
  { env: 'SPAREBAND_REGION', key: 'region', parse: s => s },
  { env: 'SPAREBAND_LISTEN', key: 'listen', parse: list },
  { env: 'SPAREBAND_ANNOUNCE', key: 'announce', parse: list },
  { env: 'SPAREBAND_BOOTSTRAP', key: 'network.bootstrap', parse: list },
  { env: 'SPAREBAND_API_PORT', key: 'api.port', parse: num },
  { env: 'SPAREBAND_SOCKS_PORT', key: 'proxy.socks_port', parse: num },
  { env: 'SPAREBAND_HTTP_PORT', key: 'proxy.http_port', parse: num },
  { env: 'SPAREBAND_PROXY_HOST', key: 'proxy.host', parse: s => s },
  { env: 'SPAREBAND_PROXY_USERNAME', key: 'proxy.username', parse: s => s },
  { env: 'SPAREBAND_PROXY_PASSWORD', key: 'proxy.password', parse: s => s },
  { env: 'SPAREBAND_DEFAULT_REGION', key: 'proxy.default_region', parse: s => s },
  { env: 'SPAREBAND_SUPPLY', key: 'exit.enabled', parse: bool },
  { env: 'SPAREBAND_RELAY', key: 'relay.enabled', parse: bool },
  { env: 'SPAREBAND_DHT_SERVER', key: 'network.dht_server', parse: bool },
  { env: 'SPAREBAND_CAPACITY_MBPS', key: 'exit.capacity_mbps', parse: num },
  // split only: the port list itself refuses a blank entry (`80,,443`) rather than skip it
  { env: 'SPAREBAND_EXIT_PORTS', key: 'exit.allowed_ports', parse: raw => raw.split(',') },
  { env: 'SPAREBAND_ALLOW_PRIVATE_TARGETS', key: 'exit.allow_private_targets', parse: bool },
  { env: 'SPAREBAND_SCHEDULE', key: 'exit.schedule', parse: s => s },
  { env: 'SPAREBAND_UPLOAD_MBPS', key: 'exit.upload_mbps', parse: num },
  { env: 'SPAREBAND_DOWNLOAD_MBPS', key: 'exit.download_mbps', parse: num },
  { env: 'SPAREBAND_PER_CONSUMER_MBPS', key: 'exit.per_consumer_mbps', parse: num },
  { env: 'SPAREBAND_MAX_TUNNELS', key: 'exit.max_tunnels', parse: num },
  { env: 'SPAREBAND_MAX_TUNNELS_PER_CONSUMER', key: 'exit.max_tunnels_per_consumer', parse: num },
  { env: 'SPAREBAND_DAILY_QUOTA_GB', key: 'exit.daily_quota_gb', parse: num },
  { env: 'SPAREBAND_MONTHLY_QUOTA_GB', key: 'exit.monthly_quota_gb', parse: num },
  { env: 'SPAREBAND_IDLE_TIMEOUT', key: 'exit.idle_timeout_seconds', parse: num },
  { env: 'SPAREBAND_ACCOUNTING', key: 'accounting.enabled', parse: bool },
  { env: 'SPAREBAND_CREDIT_LIMIT', key: 'accounting.credit_limit', parse: num },
  { env: 'SPAREBAND_STOP_AT_BALANCE', key: 'accounting.stop_at_balance', parse: num },
  { env: 'SPAREBAND_POW_DIFFICULTY', key: 'accounting.pow_difficulty', parse: num },
  { env: 'SPAREBAND_GOSSIP_RETENTION_DAYS', key: 'accounting.gossip_retention_days', parse: num },
  { env: 'SPAREBAND_REPUTATION_INTERVAL_SECONDS', key: 'accounting.reputation_interval_seconds', parse: num }
]

/** The other variables of ours: not settings (the data directory, the network file, the relaunch under Node's flags). */
const OTHER_ENV = ['SPAREBAND_DATA_DIR', 'SPAREBAND_NETWORK', 'SPAREBAND_NO_RELAUNCH']
/** The benchmarks' and the test suite's own variables, which reach the nodes they start. */
const FOREIGN_ENV_PREFIXES = ['SPAREBAND_BENCH_', 'SPAREBAND_TESTS_']

/**
 * A SPAREBAND_* variable that is none of ours is refused, as an unknown key
 * of config.toml is: a misspelt one (a systemd `Environment=` line) left
 * the node running without the quota or the limit it was to set.
 */
function checkEnvNames (env: NodeJS.ProcessEnv): void {
  const known = [...ENV_OVERRIDES.map(o => o.env), ...OTHER_ENV]
  for (const name of Object.keys(env)) {
    if (!name.startsWith('SPAREBAND_') || known.includes(name) || FOREIGN_ENV_PREFIXES.some(p => name.startsWith(p))) continue
    const near = known.filter(k => editDistance(k, name) <= 3).sort((a, b) => editDistance(a, name) - editDistance(b, name))
    const guess = near.length > 0 ? `, did you mean ${near[0]}?` : ''
    throw new ConfigError(`environment variable ${name} is not a spareband setting${guess} (the variables: ${known.join(', ')}; unset it, or set the key in config.toml)`, { source: `environment variable ${name}` })
  }
}

export function envLayer (env: NodeJS.ProcessEnv = process.env): ConfigLayer {
  checkEnvNames(env)
  const values: Record<string, unknown> = {}
  const sources = new Map<string, string>()
  for (const o of ENV_OVERRIDES) {
    const raw = env[o.env]
    if (raw == null) continue
    setPath(values, o.key, o.parse(raw))
    sources.set(o.key, `environment variable ${o.env}`)
  }
  return { source: key => sources.get(key) ?? 'the environment', values }
}

/** Builds a layer from dotted keys, e.g. `{ 'exit.enabled': false }`, for flags. */
export function layerFromKeys (entries: Array<{ key: string, value: unknown, source: string }>): ConfigLayer {
  const values: Record<string, unknown> = {}
  const sources = new Map<string, string>()
  for (const e of entries) {
    if (e.value === undefined) continue
    setPath(values, e.key, e.value)
    sources.set(e.key, e.source)
  }
  return { source: key => sources.get(key) ?? 'command line', values }
}

/**
 * Merges layers over the defaults (later layers win) and validates the
 * result. Arrays replace, they do not concatenate.
 */
export function resolveConfig (layers: ConfigLayer[]): SparebandConfig {
  const merged: Record<string, unknown> = structuredClone(defaultConfig) as any
  const sources: SourceMap = new Map()
  const given: Array<{ key: string, value: unknown, source: string }> = []
  for (const layer of layers) {
    const values: unknown = layer.values
    if (values == null || typeof values !== 'object' || Array.isArray(values)) {
      const source = typeof layer.source === 'string' ? layer.source : layer.source('')
      throw new ConfigError(`${source} must be an object of settings (e.g. { region: 'de', exit: { enabled: false } }), not ${Array.isArray(values) ? 'an array' : values === null ? 'null' : `a ${typeof values}`}`, { source })
    }
    for (const [key, value] of leaves(values as Record<string, unknown>)) {
      // a key given as undefined is one not given (an app's optional setting left unset): the default
      // stands; but a misspelt one is still refused, as it would be with a value
      if (value === undefined) {
        checkKnownKey(key, typeof layer.source === 'string' ? layer.source : layer.source(key))
        continue
      }
      setPath(merged, key, value)
      const source = typeof layer.source === 'string' ? layer.source : layer.source(key)
      sources.set(key, source)
      given.push({ key, value, source })
    }
  }
  const result = configSchema.safeParse(merged)
  if (result.success) {
    checkCrossFieldRules(result.data, sources)
    checkOverriddenValues(given, merged)
    return result.data
  }
  const issue = result.error.issues[0]
  const key = issue.path.map(String).join('.')
  // an unknown key's issue sits on its parent, which for a top-level typo (regoin = "de") is the root, that no layer names: look the key itself up
  const unknown = issue.code === 'unrecognized_keys' ? (key === '' ? issue.keys[0] : `${key}.${issue.keys[0]}`) : undefined
  const source = (unknown != null ? sourceOf(sources, unknown) : undefined) ?? sourceOf(sources, key) ?? 'defaults'
  // an app branching on err.key gets the unknown key itself, not its parent
  throw new ConfigError(describeIssue(issue, key, source, getPath(merged, issue.path)), { source, key: unknown ?? key })
}

/**
 * A value a later layer replaced (a config.toml line a flag overrides, an
 * environment variable the command line sets again) is still checked, on
 * its own over the defaults: else a broken line sat in config.toml
 * unnoticed until the day the flag was dropped, and then stopped the node.
 * Every rule of the schema is about one key, so the defaults and the one
 * value judge it as the merged config would.
 */
function checkOverriddenValues (given: Array<{ key: string, value: unknown, source: string }>, merged: Record<string, unknown>): void {
  for (const { key, value, source } of given) {
    if (Object.is(getPath(merged, key.split('.')), value)) continue
    const alone: Record<string, unknown> = structuredClone(defaultConfig) as any
    setPath(alone, key, value)
    const result = configSchema.safeParse(alone)
    if (result.success) continue
    const issue = result.error.issues[0]
    const issueKey = issue.path.map(String).join('.')
    const later = [...given].reverse().find(g => g.key === key || g.key.startsWith(`${key}.`) || key.startsWith(`${g.key}.`))?.source ?? 'a later setting'
    throw new ConfigError(`${describeIssue(issue, issueKey, source, getPath(alone, issue.path))}; ${later} sets it too, but fix this one all the same`, { source, key: issueKey })
  }
}

/** Rules that span keys, checked once each key is valid on its own. */
function checkCrossFieldRules (config: SparebandConfig, sources: SourceMap): void {
  const p = config.proxy
  if (p.enabled && p.socks_port !== 0 && p.socks_port === p.http_port) {
    // name the key someone set, not the default it collided with
    const key = sources.has('proxy.http_port') || !sources.has('proxy.socks_port') ? 'proxy.http_port' : 'proxy.socks_port'
    const other = key === 'proxy.http_port' ? 'proxy.socks_port' : 'proxy.http_port'
    const source = sourceOf(sources, key) ?? 'defaults'
    throw new ConfigError(`${source}: ${key} = ${p.socks_port} is invalid: it is also ${other}; the SOCKS5 and HTTP proxies each need a port of their own (0 picks a free one)`, { source, key })
  }
  checkOwnPorts(config, sources)
  if (p.enabled && !isLoopbackHost(p.host) && p.password == null) {
    const source = sourceOf(sources, 'proxy.host') ?? 'defaults'
    throw new ConfigError(`${source}: proxy.host = ${JSON.stringify(p.host)} is beyond loopback: set proxy.password too (SPAREBAND_PROXY_PASSWORD; with proxy.username, clients must give that user name as well), or an open proxy is exposed to the network`, { source, key: 'proxy.host' })
  }
}

/** A TCP port the node binds, and the key that names it. */
interface OwnPort { key: string, host: string, port: number, addr?: string }

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', ''])

/**
 * The control API, the proxies and libp2p's TCP listen addresses bind in
 * that order (libp2p, proxies, API), so one port named twice was taken by
 * the node itself and the next bind failed with "is in use", sending the
 * operator after another process that does not exist. Ports 0 are any free
 * one; the SOCKS5/HTTP pair has its own rule above.
 */
function checkOwnPorts (config: SparebandConfig, sources: SourceMap): void {
  const ports: OwnPort[] = []
  const listenPorts: OwnPort[] = []
  for (const a of config.listen) {
    const m = /^\/ip[46]\/([^/]+)\/tcp\/(\d+)(\/|$)/.exec(a)
    if (m != null && !a.includes('/p2p-circuit') && Number(m[2]) !== 0) listenPorts.push({ key: 'listen', host: m[1], port: Number(m[2]), addr: a })
  }
  if (config.proxy.enabled) {
    ports.push({ key: 'proxy.socks_port', host: config.proxy.host, port: config.proxy.socks_port })
    ports.push({ key: 'proxy.http_port', host: config.proxy.host, port: config.proxy.http_port })
  }
  const api: OwnPort = { key: 'api.port', host: config.api.host, port: config.api.port }
  const clash = (a: OwnPort, b: OwnPort): boolean => a.port !== 0 && a.port === b.port && (a.host === b.host || WILDCARD_HOSTS.has(a.host) || WILDCARD_HOSTS.has(b.host))
  const pairs: Array<[OwnPort, OwnPort]> = []
  for (const other of [...ports, ...listenPorts]) pairs.push([api, other])
  for (const proxy of ports) for (const l of listenPorts) pairs.push([proxy, l])
  // two TCP listen addresses of one family on one port: the second bind failed with "is in use" as well
  for (let i = 0; i < listenPorts.length; i++) {
    for (let j = i + 1; j < listenPorts.length; j++) {
      const [a, b] = [listenPorts[i], listenPorts[j]]
      if (a.addr!.slice(0, 4) !== b.addr!.slice(0, 4) || !clash(a, b)) continue
      const source = sourceOf(sources, 'listen') ?? 'defaults'
      const why = a.addr === b.addr ? `it names ${a.addr} twice` : `${a.addr} and ${b.addr} both take port ${a.port}`
      throw new ConfigError(`${source}: listen is invalid: ${why}; each TCP listen address needs a port of its own (0 picks a free one)`, { source, key: 'listen' })
    }
  }
  for (const [a, b] of pairs) {
    if (!clash(a, b)) continue
    // name the key someone set, not the default it collided with
    const [key, other] = sources.has(a.key) || !sources.has(b.key) ? [a, b] : [b, a]
    const source = sourceOf(sources, key.key) ?? 'defaults'
    const shown = key.key === 'listen' ? `listen address ${key.addr ?? ''}` : `${key.key} = ${key.port}`
    const otherShown = other.key === 'listen' ? `the listen address ${other.addr ?? ''} has port ${other.port}` : `${other.key} is ${other.port} (on ${other.host})`
    throw new ConfigError(`${source}: ${shown} is invalid: ${otherShown} too; the control API, the proxies and the TCP listen addresses each need a port of their own (0 picks a free one)`, { source, key: key.key })
  }
}

function describeIssue (issue: z.core.$ZodIssue, key: string, source: string, value: unknown): string {
  if (issue.code === 'unrecognized_keys') {
    return unknownKeyMessage(source, issue.path.map(String), issue.keys)
  }
  // JSON has no NaN or Infinity (it writes null)
  const shown = value === undefined ? 'nothing' : typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value)
  return `${source}: ${key} = ${shown} is invalid: ${valueProblem(issue, key, value)}`
}

/** What is wrong with a value, in words: zod's own ("Invalid input") says nothing of what is allowed. */
export function valueProblem (issue: z.core.$ZodIssue, key: string, value: unknown): string {
  if (issue.code === 'invalid_type') return expectedText(issue.expected, key, value)
  // zod's own words for a bound ("Too big: expected number to be <=65535"), in ours, where a setting gives none
  if ((issue.code === 'too_big' || issue.code === 'too_small') && issue.origin === 'number' && /^Too (big|small): expected number to be/.test(issue.message)) {
    const bound = issue.code === 'too_big' ? issue.maximum : issue.minimum
    const word = issue.code === 'too_big' ? (issue.inclusive === false ? 'below' : 'at most') : (issue.inclusive === false ? 'above' : 'at least')
    const unit = UNITS.find(([re]) => re.test(key))?.[1]
    return `must be ${word} ${String(bound)}${unit != null ? `, ${unit}` : ''}`
  }
  if (issue.code === 'invalid_union') {
    const forms = UNION_FORMS.find(([re]) => re.test(key))?.[1]
    return `expected ${forms ?? 'one of the forms this setting takes (see the template: spareband init --print-config)'}, not ${given(value)}`
  }
  return issue.message
}

/** What a setting that takes several forms may be. */
const UNION_FORMS: Array<[RegExp, string]> = [
  [/allowed_ports\.\d+$/, 'a port (443), a range as a string ("8000-8100") or "reduced"'],
  [/^(network\.dht_server|relay\.enabled)$/, 'true, false or "auto"']
]

/** The unit a key's name gives its number in (daily_quota_gb: GB). */
const UNITS: Array<[RegExp, string]> = [[/(^|\.)price_per_gb$/, 'in credits per GB'], [/(^|\.)(credit_limit|stop_at_balance|allowance)$/, 'in credits'], [/_gb$/, 'in GB'], [/_mb$/, 'in MiB (2^20 bytes)'], [/_mbps$/, 'in Mbit/s'], [/_seconds$/, 'in seconds'], [/_days$/, 'in days']]

/** "expected a whole number, not 1.5": for a wrong type, in words, with the key's unit (a TOML "10GB" is a string). */
function expectedText (expected: string, key: string, value: unknown): string {
  const unit = UNITS.find(([re]) => re.test(key))?.[1]
  const what = expected === 'int' ? 'a whole number' : expected === 'number' ? 'a number' : expected === 'boolean' ? 'true or false' : expected === 'array' ? 'a list' : expected === 'object' ? 'a table of settings' : `a ${expected}`
  const quoted = typeof value === 'string' && (expected === 'number' || expected === 'int') ? ' (write the number alone, without quotes or unit)' : ''
  return `expected ${what}${unit != null && (expected === 'number' || expected === 'int') ? ` ${unit}` : ''}, not ${given(value)}${quoted}`
}

/** A value as an error names it: "the string \"10GB\"", "a list", "a date" (TOML has dates), "a table of settings". */
function given (value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (value instanceof Date) return 'a date'
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`
  if (typeof value === 'number' || typeof value === 'boolean') return `${String(value)}`
  if (typeof value === 'object') return 'a table of settings'
  return typeof value
}

/** Throws the unknown-key ConfigError for a dotted key the schema does not have. */
function checkKnownKey (key: string, source: string): void {
  const parts = key.split('.')
  for (let i = 0; i < parts.length; i++) {
    const allowed = schemaKeys(parts.slice(0, i))
    // a key inside a value that is not a section (a list, a string): the schema check of the value says what is wrong
    if (allowed.length === 0) return
    if (!allowed.includes(parts[i])) {
      throw new ConfigError(unknownKeyMessage(source, parts.slice(0, i), [parts[i]]), { source, key: [...parts.slice(0, i), parts[i]].join('.') })
    }
  }
}

/** Names the unknown keys of a section, what the first was likely meant to be, and the keys allowed there. */
function unknownKeyMessage (source: string, section: string[], names: string[]): string {
  // the schema's keys: the defaults lack the optional ones (region, proxy.username, ...)
  const allowed = schemaKeys(section)
  const guess = names.length === 1 ? guessKey(section, names[0], allowed) : ''
  return `${source}: unknown key ${names.map(k => `"${[...section, k].join('.')}"`).join(', ')}${guess} (allowed here: ${allowed.join(', ')})`
}

/**
 * What an unknown key was most likely meant to be, as ', did you mean ...?'
 * (or ''): the same name in another section, as when a key of a section
 * the template has commented out ("# [exit]") is uncommented alone and
 * lands in the section above it; else a close spelling here.
 */
function guessKey (section: string[], name: string, allowed: string[]): string {
  const elsewhere = allKeys().filter(k => k.endsWith(`.${name}`) && k !== [...section, name].join('.'))
  if (elsewhere.length === 1) return `, did you mean "${elsewhere[0]}"? (it belongs under [${elsewhere[0].slice(0, elsewhere[0].lastIndexOf('.'))}])`
  if (elsewhere.length > 1) return `, did you mean one of ${elsewhere.map(k => `"${k}"`).join(', ')}?`
  const near = allowed.filter(k => editDistance(k, name) <= Math.min(2, Math.floor(name.length / 3)))
  return near.length > 0 ? `, did you mean "${[...section, near[0]].join('.')}"?` : ''
}

/** Every dotted key the schema has, sections' keys included. */
function allKeys (path: string[] = []): string[] {
  return schemaKeys(path).flatMap(k => [[...path, k].join('.'), ...allKeys([...path, k])])
}

/** Levenshtein distance, for keys of a few dozen characters. */
function editDistance (a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    row = next
  }
  return row[b.length]
}

/** The keys the schema allows at `path` (an object section). */
function schemaKeys (path: PropertyKey[]): string[] {
  let schema: any = configSchema
  for (const p of path) {
    schema = schema?.shape?.[p as string]
    while (schema?.unwrap != null && schema.shape == null) schema = schema.unwrap()
  }
  return Object.keys(schema?.shape ?? {})
}

function sourceOf (sources: SourceMap, key: string): string | undefined {
  // the issue may sit on a parent (a missing section) or a child (one array element)
  for (let k = key; ; k = k.slice(0, Math.max(0, k.lastIndexOf('.')))) {
    const s = sources.get(k)
    if (s != null) return s
    if (k === '') break
  }
  for (const [k, s] of sources) if (k.startsWith(key + '.')) return s
  return undefined
}

function leaves (obj: Record<string, unknown>, prefix = ''): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = []
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix === '' ? k : `${prefix}.${k}`
    if (v != null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)) out.push(...leaves(v as Record<string, unknown>, key))
    else out.push([key, v])
  }
  return out
}

function setPath (obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.')
  let cur: any = obj
  for (const p of parts.slice(0, -1)) {
    if (cur[p] == null || typeof cur[p] !== 'object' || Array.isArray(cur[p])) cur[p] = {}
    cur = cur[p]
  }
  cur[parts[parts.length - 1]] = value
}

function getPath (obj: unknown, path: PropertyKey[]): unknown {
  let cur: any = obj
  for (const p of path) {
    if (cur == null || typeof cur !== 'object') return undefined
    cur = cur[p as any]
  }
  return cur
}
