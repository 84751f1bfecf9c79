/**
 * Exit policy: which TCP targets a consumer may reach through this exit.
 *
 * An exit opens connections for strangers from inside its operator's
 * network. Without a policy a consumer could reach the operator's router
 * admin page, a cloud metadata service (169.254.169.254), a database bound to
 * localhost or any other host on the LAN. So the exit refuses every address
 * that is not public, globally routed unicast, every port the operator did
 * not open, and whatever ranges and domains the operator adds.
 *
 * There are two checks because of DNS rebinding:
 *
 * - `checkTarget()` runs on the host string exactly as the consumer sent it,
 *   before any lookup. It rejects malformed hosts, local-only and denied
 *   domains, and IP literals in any spelling.
 * - `checkAddress()` runs on the address the exit is about to dial, after
 *   DNS. A name that passed `checkTarget()` can still resolve to 127.0.0.1
 *   (an attacker's DNS answering differently the second time, or simply
 *   `127.0.0.1.nip.io`). The exit must resolve once, check each resolved
 *   address here and dial exactly that address, never the name again.
 *
 * IP literals are recognised in every spelling the system resolver accepts
 * (inet_aton: `127.1`, `0x7f000001`, `0177.0.0.1`, `2130706433`, ...).
 * A literal mistaken for a name would go to getaddrinfo(), which turns it
 * into 127.0.0.1 without asking DNS, so it has to be caught here.
 *
 * Everything in this module is pure: no sockets, no DNS.
 */

import { isIPv6 } from 'node:net'
import ipaddr from 'ipaddr.js'
import { formatPortList, portAllowed } from './ports.ts'
import type { PortRange } from './ports.ts'

export interface ExitPolicyInit {
  /** the only destination ports consumers may use, e.g. from `parsePortList` */
  allowedPorts: PortRange[]
  /** lifts the address-class rules (loopback, private, ...) for local testnets; ports, deniedCidrs and deniedDomains still apply */
  allowPrivateTargets?: boolean
  /** extra ranges to refuse, e.g. `93.184.0.0/16` or `2001:db8::/32`; a bare address means just that address */
  deniedCidrs?: string[]
  /** domain suffixes to refuse: `example.com` covers `example.com` and `a.example.com` */
  deniedDomains?: string[]
  /** the exit's own addresses, refused so consumers cannot reach services bound to them; more can be learned at run time with `setOwnAddresses()` */
  ownAddresses?: string[]
}

/** `special`: refused as a private, loopback or other non-public address, or a local-only name, which --allow-private-targets would let through. */
export type PolicyDecision = { allowed: true } | { allowed: false, reason: string, special?: true }

export type ParsedHost =
  | { kind: 'ip', address: string, family: 4 | 6 }
  | { kind: 'name', name: string }

export class BadHostError extends Error {
  static name = 'BadHostError'

  constructor (message = 'Bad host') {
    super(message)
    this.name = 'BadHostError'
  }
}

type Address = ipaddr.IPv4 | ipaddr.IPv6
type Cidr = [Address, number]

/** A parsed host as used internally: the ipaddr.js object, not just its text. */
type Host =
  | { kind: 'ip', addr: Address, zone?: string }
  | { kind: 'name', name: string }
type IpHost = Extract<Host, { kind: 'ip' }>

// ---------------------------------------------------------------------------
// Host parsing

/**
 * A 253-character name plus its trailing dot. Nothing valid is longer, and a
 * bound on the input keeps every regular expression below cheap.
 */
const MAX_HOST_LENGTH = 254

/**
 * Classifies the host a consumer asked for as an IP literal or a DNS name.
 * IPv4-mapped IPv6 addresses come back as the IPv4 address they carry.
 * @throws {BadHostError} when the host is neither
 */
export function parseTargetHost (host: string): ParsedHost {
  const parsed = parseHostOrThrowBadHost(host)
  if (parsed.kind === 'name') return { kind: 'name', name: parsed.name }
  return { kind: 'ip', address: addressText(parsed), family: parsed.addr.kind() === 'ipv4' ? 4 : 6 }
}

/**
 * The class of an IP address: 'public', or the name of the special range it
 * is in ('loopback', 'private', 'linkLocal', 'documentation', ...). Accepts
 * the same spellings as `parseTargetHost`.
 * @throws {BadHostError} when the string is not an IP address
 */
export function classifyAddress (address: string): string {
  const parsed = parseHostOrThrowBadHost(address)
  if (parsed.kind !== 'ip') throw new BadHostError(`${quote(address)} is not an IP address`)
  return addressClass(parsed.addr)
}

/** The contract is "only BadHostError escapes", even if a parser bug throws something else. */
function parseHostOrThrowBadHost (host: string): Host {
  try {
    return parseHost(host)
  } catch (err) {
    if (err instanceof BadHostError) throw err
    throw badHost(printable(host), 'unparseable')
  }
}

function parseHost (host: unknown): Host {
  if (typeof host !== 'string') throw new BadHostError('bad host: not a string')
  if (host === '') throw new BadHostError('bad host: empty')
  if (host.length > MAX_HOST_LENGTH) throw badHost(host, `longer than ${MAX_HOST_LENGTH} characters`)
  if (host.startsWith('[') || host.endsWith(']')) return parseBracketed(host)
  // a colon never appears in a DNS name, so this is IPv6 or nothing
  if (host.includes(':')) return parseIPv6Literal(host, host)
  return parseIPv4Literal(host) ?? parseDomainName(host)
}

/** Brackets, as in URLs, only make sense around an IPv6 literal; `[1.2.3.4]` is junk. */
function parseBracketed (host: string): IpHost {
  if (!host.startsWith('[') || !host.endsWith(']')) throw badHost(host, 'unbalanced brackets')
  const inner = host.slice(1, -1)
  if (!inner.includes(':')) throw badHost(host, 'brackets may only enclose an IPv6 address')
  return parseIPv6Literal(inner, host)
}

/** Only the characters an inet_aton literal can be made of: digits, dots and hex. */
const IPV4_LITERAL_CHARS = /^[0-9a-fx.]+$/i

/**
 * inet_aton(): one to four dot-separated parts, each decimal, octal (leading
 * 0) or hex (0x); the last part fills all remaining bytes, so `127.1`,
 * `0x7f000001` and `2130706433` are all 127.0.0.1. ipaddr.js's IPv4 parser
 * follows these rules, including rejecting `08` and parts that overflow (the
 * tests cross-check it against a reference inet_aton).
 */
function parseIPv4Literal (host: string): IpHost | undefined {
  if (!IPV4_LITERAL_CHARS.test(host) || !ipaddr.IPv4.isValid(host)) return undefined
  return { kind: 'ip', addr: ipaddr.IPv4.parse(host) }
}

/**
 * IPv6, optionally with a zone id (`fe80::1%eth0`). Node's `isIPv6` is the
 * strict gate (1-4 hex digits per group, a dotted quad only at the end and
 * without leading zeros): ipaddr.js alone is looser and would read
 * `::ffff:0177.0.0.1` as 177.0.0.1, a string the OS refuses as an address.
 */
function parseIPv6Literal (text: string, host: string): IpHost {
  if (!isIPv6(text)) throw badHost(host, 'not a valid IPv6 address')
  const percent = text.indexOf('%')
  const bare = percent === -1 ? text : text.slice(0, percent)
  const zone = percent === -1 ? undefined : text.slice(percent + 1)
  let addr: ipaddr.IPv6
  try {
    addr = ipaddr.IPv6.parse(dottedTailToHex(bare))
  } catch {
    throw badHost(host, 'not a valid IPv6 address')
  }
  // the kernel sends to ::ffff:a.b.c.d as plain IPv4, so judge it as IPv4;
  // a zone id means nothing for an IPv4 destination
  if (addr.isIPv4MappedAddress()) return { kind: 'ip', addr: addr.toIPv4Address() }
  return zone === undefined ? { kind: 'ip', addr } : { kind: 'ip', addr, zone }
}

/**
 * Rewrites a trailing dotted quad as two hex groups (`::1.2.3.4` to
 * `::102:304`). ipaddr.js reads `::1.2.3.4` as IPv4-mapped `::ffff:1.2.3.4`,
 * but RFC 4291 and the kernel read it as the IPv4-compatible `::102:304`,
 * a different address. The caller has already checked the quad with isIPv6.
 */
function dottedTailToHex (text: string): string {
  const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (m == null) return text
  const [a, b, c, d] = m.slice(2).map(Number)
  return `${m[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
}

/** Checked on the raw host, before lower-casing: `'\u212A'.toLowerCase()` is an ASCII `k`. */
const NAME_CHARS = /^[A-Za-z0-9_.-]+$/
const LABEL = /^[a-z0-9_-]{1,63}$/
/**
 * A last label that reads as a number (`256.1.1.1`, `1.2.3.4.5`, `foo.0x1f`)
 * is a broken IP literal, not a name: no top-level domain looks like that,
 * and URL parsers treat such hosts as IPv4 too.
 */
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/

function parseDomainName (host: string): Extract<Host, { kind: 'name' }> {
  if (!NAME_CHARS.test(host)) throw badHost(host, 'only letters, digits, "-", "_" and "." are allowed in a name')
  // the trailing dot names the DNS root: `example.com.` is `example.com`
  const name = (host.endsWith('.') ? host.slice(0, -1) : host).toLowerCase()
  if (name.length > 253) throw badHost(host, 'a name is at most 253 characters')
  const labels = name.split('.')
  for (const label of labels) {
    if (label === '') throw badHost(host, 'empty label')
    if (!LABEL.test(label)) throw badHost(host, 'a label is at most 63 characters')
  }
  if (NUMERIC_LABEL.test(labels[labels.length - 1])) throw badHost(host, 'neither an IP address nor a name (numeric last label)')
  return { kind: 'name', name }
}

function badHost (host: string, why: string): BadHostError {
  return new BadHostError(`bad host ${quote(host)}: ${why}`)
}

/** Quoted and shortened, so control characters and huge strings cannot mangle a log line. */
function quote (text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text)
}

/** Untyped callers may pass anything; String() itself throws on some objects. */
function printable (value: unknown): string {
  return typeof value === 'string' ? value : `(${typeof value})`
}

function addressText (host: IpHost): string {
  const text = host.addr.toString()
  return host.zone === undefined ? text : `${text}%${host.zone}`
}

// ---------------------------------------------------------------------------
// Address classes

function cidr (text: string): Cidr {
  return ipaddr.parseCIDR(text)
}

function inCidr (addr: Address, [net, bits]: Cidr): boolean {
  if (addr.kind() === net.kind()) return addr.match(net, bits)
  // an IPv4 target against an IPv6 range: compare it as IPv4-mapped, so an
  // operator's `::ffff:10.0.0.0/104` also covers 10.0.0.1
  if (addr instanceof ipaddr.IPv4) return addr.toIPv4MappedAddress().match(net, bits)
  return false
}

/**
 * Ranges named more precisely than ipaddr.js does (it files them all under
 * 'reserved'), so reasons can say what they are. Checked first.
 */
const NAMED_RANGES: ReadonlyArray<[string, Cidr[]]> = [
  ['documentation', ['192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24', '2001:db8::/32', '3fff::/20'].map(cidr)],
  ['benchmarking', ['198.18.0.0/15'].map(cidr)]
]

/** Deprecated (RFC 4291 2.5.5.1), and ipaddr.js calls it 'unicast'. */
const IPV4_COMPATIBLE = cidr('::/96')
/** All IPv6 unicast the IANA has handed out; outside it nothing is routed. */
const IPV6_GLOBAL_UNICAST = cidr('2000::/3')
const NAT64_WELL_KNOWN = cidr('64:ff9b::/96')

/**
 * Every non-public answer is denied: anything ipaddr.js puts in a special
 * range, plus what it leaves in 'unicast' but is not really public.
 */
function addressClass (addr: Address): string {
  for (const [name, ranges] of NAMED_RANGES) {
    if (ranges.some(r => inCidr(addr, r))) return name
  }
  const range: string = addr.range()
  if (range !== 'unicast') return range
  if (addr instanceof ipaddr.IPv6) {
    if (inCidr(addr, IPV4_COMPATIBLE)) return 'ipv4Compatible'
    if (!inCidr(addr, IPV6_GLOBAL_UNICAST)) return 'reserved'
  }
  return 'public'
}

interface Embedded { addr: ipaddr.IPv4, via: string }

/**
 * The IPv4 addresses an IPv6 transition address carries. These ranges are
 * denied anyway; the embedded address gives the specific reason, and is also
 * matched against deniedCidrs and ownAddresses, which still apply when
 * private targets are allowed.
 */
function embeddedIPv4 (addr: Address): Embedded[] {
  if (!(addr instanceof ipaddr.IPv6)) return []
  const p = addr.parts
  const v4 = (hi: number, lo: number): ipaddr.IPv4 => new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff])
  switch (addressClass(addr)) {
    case 'ipv4Compatible': return [{ addr: v4(p[6], p[7]), via: 'IPv4-compatible' }]
    case 'rfc6145': return [{ addr: v4(p[6], p[7]), via: 'IPv4-translated' }]
    case 'rfc6052': return inCidr(addr, NAT64_WELL_KNOWN) ? [{ addr: v4(p[6], p[7]), via: 'NAT64' }] : []
    case '6to4': return [{ addr: v4(p[1], p[2]), via: '6to4' }]
    // Teredo: server in bits 32-63, client in the last 32 bits, inverted
    case 'teredo': return [
      { addr: v4(p[2], p[3]), via: 'Teredo server' },
      { addr: v4(p[6] ^ 0xffff, p[7] ^ 0xffff), via: 'Teredo client' }
    ]
    default: return []
  }
}

const CLASS_PHRASES: Readonly<Record<string, string>> = {
  loopback: 'a loopback address',
  private: 'a private address',
  linkLocal: 'a link-local address',
  carrierGradeNat: 'a carrier-grade NAT address',
  multicast: 'a multicast address',
  broadcast: 'the broadcast address',
  unspecified: 'an unspecified address',
  reserved: 'a reserved address',
  documentation: 'a documentation address',
  benchmarking: 'a benchmarking address',
  uniqueLocal: 'a unique-local address',
  deprecatedSiteLocal: 'a site-local address',
  ipv4Compatible: 'a deprecated IPv4-compatible address',
  rfc6145: 'an IPv4-translated address',
  rfc6052: 'a NAT64 address',
  '6to4': 'a 6to4 address',
  teredo: 'a Teredo address',
  discard: 'a discard-only address'
}

function classPhrase (cls: string): string {
  return CLASS_PHRASES[cls] ?? `a special-purpose address (${cls})`
}

// ---------------------------------------------------------------------------
// Domain names

/**
 * Names that only mean something on the exit's machine or network:
 * localhost (RFC 6761), .local (mDNS), .home.arpa (RFC 8375), .internal
 * (reserved by ICANN), .localdomain (common /etc/hosts alias) and the
 * private-use names of RFC 6762 appendix G.
 */
const LOCAL_SUFFIXES = ['localhost', 'local', 'internal', 'home.arpa', 'localdomain', 'lan', 'home', 'corp', 'intranet', 'private']

function matchingSuffix (name: string, suffixes: readonly string[]): string | undefined {
  return suffixes.find(s => name === s || name.endsWith(`.${s}`))
}

// ---------------------------------------------------------------------------
// Configuration

export class PolicyConfigError extends Error {
  static name = 'PolicyConfigError'

  constructor (message = 'Invalid exit policy entry') {
    super(message)
    this.name = 'PolicyConfigError'
  }
}

/**
 * Operator-supplied addresses must be written the usual way: read
 * inet_aton-style, a typo like `10/8` would become 0.0.0.10/8 and quietly
 * deny the wrong range.
 */
function parseConfigAddress (text: string, entry: string): Address {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text)
  if (isIPv6(text) && !text.includes('%')) return ipaddr.IPv6.parse(dottedTailToHex(text))
  const what = text === entry ? quote(text) : `${quote(text)} in ${quote(entry)}`
  throw new PolicyConfigError(`${what} is not an IP address: write IPv4 as four decimal numbers (e.g. "10.0.0.0/8") and IPv6 without a zone`)
}

/**
 * A denied range as the operator writes it (`denied_cidrs` in config.toml):
 * `203.0.113.0/24`, `2001:db8::/32`, or a bare address for that one host.
 * Exported so config validation refuses exactly what the policy would.
 * @throws {PolicyConfigError} naming the entry and what is wrong with it
 */
export function parseDeniedCidr (entry: string): [ipaddr.IPv4 | ipaddr.IPv6, number] {
  const text = String(entry).trim()
  const [addrText, bitsText, extra] = text.split('/')
  if (extra !== undefined) throw new PolicyConfigError(`${quote(text)} is not a CIDR range: expected ADDRESS/BITS or a bare address`)
  const addr = parseConfigAddress(addrText, text)
  const max = addr.kind() === 'ipv4' ? 32 : 128
  if (bitsText === undefined) return [addr, max]
  if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > max) {
    throw new PolicyConfigError(`${quote(text)} has a prefix length outside 0-${max}`)
  }
  return [addr, Number(bitsText)]
}

/** Interfaces report link-local addresses with a zone; the zone does not matter for matching. */
function parseOwnAddress (entry: string): Cidr {
  const text = String(entry).trim()
  const percent = text.indexOf('%')
  const bare = percent === -1 ? text : text.slice(0, percent)
  if (bare.includes('/')) throw new PolicyConfigError(`exit policy: ownAddresses entry ${quote(text)} must be a single address (use deniedCidrs for ranges)`)
  return inField('ownAddresses', () => parseDeniedCidr(bare))
}

/**
 * A denied domain as the operator writes it (`denied_domains`): `example.com`,
 * `.example.com` and `*.example.com` all mean the same suffix rule, which
 * covers `example.com` and every name under it. Returns the suffix.
 * @throws {PolicyConfigError} when the entry is not a domain name
 */
export function parseDeniedDomain (entry: string): string {
  const text = String(entry).trim()
  const suffix = text.startsWith('*.') ? text.slice(2) : text.startsWith('.') ? text.slice(1) : text
  try {
    return parseDomainName(suffix).name
  } catch {
    throw new PolicyConfigError(`${quote(text)} is not a domain name such as "example.com" or "*.example.com"`)
  }
}

/** Prefixes a config error with the policy field it came from, for errors raised by the constructor. */
function inField<T> (field: string, parse: () => T): T {
  try {
    return parse()
  } catch (err) {
    if (err instanceof PolicyConfigError) throw new PolicyConfigError(`exit policy: ${field} entry ${err.message}`)
    throw err
  }
}

function validPortRange (range: PortRange): PortRange {
  const ok = Array.isArray(range) && range.length === 2 &&
    range.every(p => Number.isInteger(p) && p >= 1 && p <= 65535) && range[0] <= range[1]
  if (!ok) throw new PolicyConfigError(`exit policy: ${JSON.stringify(range)} is not a port range within 1-65535`)
  return [range[0], range[1]]
}

// ---------------------------------------------------------------------------
// The policy

function deny (reason: string): PolicyDecision {
  return { allowed: false, reason }
}

/** Refused for what the address or name is (private, loopback, local-only, ...): --allow-private-targets lets such targets through. */
function denySpecial (reason: string): PolicyDecision {
  return { allowed: false, reason, special: true }
}

/**
 * `<host> is <what>`, or `<host> maps to <address>, <what>` when the consumer
 * spelled the address differently, so logs show what `0x7f.1` really was.
 */
function about (host: string, canonical: string, what: string): string {
  const spelled = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  return spelled.toLowerCase() === canonical ? `${host} is ${what}` : `${host} maps to ${canonical}, ${what}`
}

export class ExitPolicy {
  private readonly ports: PortRange[]
  private readonly allowPrivateTargets: boolean
  private readonly deniedCidrs: Array<{ text: string, range: Cidr }>
  private readonly deniedDomains: string[]
  private readonly ownAddresses: Cidr[]
  /** learned at run time (interfaces, announced and observed addresses), replaced as they change */
  private learnedOwnAddresses: Array<{ text: string, range: Cidr }> = []

  /** @throws {PolicyConfigError} on a malformed port range, CIDR, domain or own address, so a typo fails at startup */
  constructor (init: ExitPolicyInit) {
    this.ports = init.allowedPorts.map(validPortRange)
    this.allowPrivateTargets = init.allowPrivateTargets === true
    this.deniedCidrs = (init.deniedCidrs ?? []).map(text => ({ text: String(text).trim(), range: inField('deniedCidrs', () => parseDeniedCidr(text)) }))
    this.deniedDomains = (init.deniedDomains ?? []).map(text => inField('deniedDomains', () => parseDeniedDomain(text)))
    this.ownAddresses = (init.ownAddresses ?? []).map(parseOwnAddress)
  }

  /**
   * Replaces the own addresses learned at run time; those given at
   * construction stay. Entries that are not single addresses are left out
   * and returned, so one odd interface entry cannot keep the rest out.
   */
  setOwnAddresses (addresses: Iterable<string>): string[] {
    const learned: Array<{ text: string, range: Cidr }> = []
    const rejected: string[] = []
    for (const text of addresses) {
      try {
        learned.push({ text, range: parseOwnAddress(text) })
      } catch {
        rejected.push(text)
      }
    }
    this.learnedOwnAddresses = learned
    return rejected
  }

  /** The own addresses learned at run time, as given to `setOwnAddresses()`. */
  get learnedOwn (): string[] {
    return this.learnedOwnAddresses.map(a => a.text)
  }

  checkPort (port: number): PolicyDecision {
    if (!Number.isInteger(port) || port < 1 || port > 65535) return deny(`port ${port} is not a valid TCP port`)
    if (!portAllowed(this.ports, port)) {
      return deny(`port ${port} is not in the exit's allowed ports (${formatPortList(this.ports) || 'none'})`)
    }
    return { allowed: true }
  }

  /** before DNS: host as the consumer sent it (domain checks, IP literal checks) */
  checkTarget (host: string, port: number): PolicyDecision {
    const portDecision = this.checkPort(port)
    if (!portDecision.allowed) return portDecision
    let parsed: Host
    try {
      parsed = parseHostOrThrowBadHost(host)
    } catch (err) {
      // fail closed: whatever went wrong, the consumer does not get through
      return deny(err instanceof BadHostError ? err.message : `bad host ${quote(printable(host))}`)
    }
    return parsed.kind === 'ip' ? this.checkIp(parsed, host) : this.checkName(parsed.name)
  }

  /** after DNS: the exact address that will be dialed */
  checkAddress (address: string, port: number): PolicyDecision {
    const portDecision = this.checkPort(port)
    if (!portDecision.allowed) return portDecision
    let parsed: Host
    try {
      parsed = parseHostOrThrowBadHost(address)
    } catch {
      return deny(`${quote(printable(address))} is not an IP address`)
    }
    if (parsed.kind !== 'ip') return deny(`${quote(address)} is not an IP address`)
    return this.checkIp(parsed, address)
  }

  /** one line for logs */
  describe (): string {
    const parts = [
      `ports ${formatPortList(this.ports) || 'none'}`,
      this.allowPrivateTargets ? 'private targets ALLOWED' : 'private targets denied'
    ]
    const count = (n: number, one: string, many: string): void => {
      if (n > 0) parts.push(`${n} ${n === 1 ? one : many}`)
    }
    count(this.deniedCidrs.length, 'denied range', 'denied ranges')
    count(this.deniedDomains.length, 'denied domain', 'denied domains')
    count(this.ownAddresses.length + this.learnedOwnAddresses.length, 'own address', 'own addresses')
    return parts.join('; ')
  }

  private checkIp (host: IpHost, input: string): PolicyDecision {
    const canonical = addressText(host)
    const embedded = embeddedIPv4(host.addr)
    if (!this.allowPrivateTargets) {
      const cls = addressClass(host.addr)
      if (cls !== 'public') {
        // name the embedded IPv4 when that is what makes it dangerous
        for (const e of embedded) {
          const inner = addressClass(e.addr)
          if (inner !== 'public') return denySpecial(`${input} embeds ${e.addr.toString()} (${e.via}), ${classPhrase(inner)}`)
        }
        return denySpecial(about(input, canonical, classPhrase(cls)))
      }
      // a zone only scopes link-local and multicast addresses, which are
      // denied above; on anything else it is a sign of trickery
      if (host.zone !== undefined) return deny(`${input} has a zone id (%${host.zone}); scoped addresses are never public`)
    }
    const all = [host.addr, ...embedded.map(e => e.addr)]
    const isOwn = (range: Cidr): boolean => all.some(a => inCidr(a, range))
    if (this.ownAddresses.some(isOwn) || this.learnedOwnAddresses.some(own => isOwn(own.range))) {
      return deny(about(input, canonical, "one of the exit's own addresses"))
    }
    const denied = this.deniedCidrs.find(d => all.some(a => inCidr(a, d.range)))
    if (denied != null) return deny(about(input, canonical, `in a denied range (${denied.text})`))
    return { allowed: true }
  }

  private checkName (name: string): PolicyDecision {
    if (!this.allowPrivateTargets) {
      const local = matchingSuffix(name, LOCAL_SUFFIXES)
      if (local != null) return denySpecial(local === name ? `${name} is a local-only name` : `${name} is a local-only name (.${local})`)
      // the exit's resolver would complete "router" with its own search
      // domains, i.e. look it up on the exit's network
      if (!name.includes('.')) return denySpecial(`${name} is a single-label name, which would resolve on the exit's own network`)
    }
    const denied = matchingSuffix(name, this.deniedDomains)
    if (denied != null) return deny(`${name} is in a denied domain (${denied})`)
    return { allowed: true }
  }
}
