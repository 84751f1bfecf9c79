/**
 * SOCKS5 wire format for the local proxy ingress: RFC 1928 (greeting, method
 * selection, request, reply) and RFC 1929 (username/password
 * subnegotiation).
 *
 * Everything here is pure and incremental: parsers take the bytes received so
 * far and return `undefined` while the message is incomplete, the parsed value
 * plus how many bytes it used once it is complete, or throw
 * `Socks5ProtocolError` as soon as the bytes cannot become a valid message.
 * Errors are detected from the earliest byte that proves them, so a client
 * speaking another protocol is rejected without waiting for more data.
 */

export const SOCKS_VERSION = 5

/** RFC 1929 subnegotiation version. */
export const USERPASS_VERSION = 1

/**
 * Authentication methods (RFC 1928 §3). Plain objects rather than enums so
 * the module also runs under Node's type stripping.
 */
export const AuthMethod = {
  NoAuth: 0x00,
  UserPass: 0x02,
  NoAcceptable: 0xff
} as const
export type AuthMethod = typeof AuthMethod[keyof typeof AuthMethod]

/** Request commands (RFC 1928 §4). */
export const Command = {
  Connect: 0x01,
  Bind: 0x02,
  UdpAssociate: 0x03
} as const
export type Command = typeof Command[keyof typeof Command]

/** Address types (RFC 1928 §5). */
export const AddressType = {
  IPv4: 0x01,
  Domain: 0x03,
  IPv6: 0x04
} as const
export type AddressType = typeof AddressType[keyof typeof AddressType]

/** Reply codes (RFC 1928 §6). */
export const Reply = {
  Succeeded: 0,
  GeneralFailure: 1,
  NotAllowed: 2,
  NetworkUnreachable: 3,
  HostUnreachable: 4,
  ConnectionRefused: 5,
  TtlExpired: 6,
  CommandNotSupported: 7,
  AddressTypeNotSupported: 8
} as const
export type Reply = typeof Reply[keyof typeof Reply]

export class Socks5ProtocolError extends Error {
  static name = 'Socks5ProtocolError'
  /**
   * Reply code to send (with `encodeReply`) before closing. Only set for
   * errors in the request phase; greeting and subnegotiation errors have no
   * reply code, the caller just closes (after a failed
   * `encodeUserPassStatus` for the latter).
   */
  readonly reply?: number

  constructor (message = 'Invalid SOCKS5 message', reply?: number) {
    super(message)
    this.name = 'Socks5ProtocolError'
    if (reply !== undefined) this.reply = reply
  }
}

export interface Greeting { methods: number[] }
export interface UserPass { username: string, password: string }
export interface ConnectRequest {
  command: number
  /** IPv4 dotted quad, IPv6 in RFC 5952 form without brackets, or the domain name as sent. */
  host: string
  port: number
  addressType: 'ipv4' | 'ipv6' | 'domain'
}

/** `undefined` means more bytes are needed. */
export type Parsed<T> = { value: T, consumed: number } | undefined

// Fatal so that invalid UTF-8 is an error instead of silently becoming U+FFFD,
// which could make two different byte strings compare equal.
const utf8 = new TextDecoder('utf-8', { fatal: true })
const utf8Encoder = new TextEncoder()

function decodeUtf8 (bytes: Uint8Array, what: string, reply?: number): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw new Socks5ProtocolError(`${what} is not valid UTF-8`, reply)
  }
}

/**
 * Client greeting: VER NMETHODS METHODS...
 * Throws on a version other than 5 and on an empty method list (RFC 1928
 * requires at least one method).
 */
export function parseGreeting (buf: Uint8Array): Parsed<Greeting> {
  if (buf.length < 1) return undefined
  if (buf[0] !== SOCKS_VERSION) {
    throw new Socks5ProtocolError(`unsupported SOCKS version ${buf[0]} in greeting: only SOCKS5 is supported`)
  }
  if (buf.length < 2) return undefined
  const count = buf[1]
  if (count === 0) throw new Socks5ProtocolError('SOCKS5 greeting offers no authentication methods')
  const consumed = 2 + count
  if (buf.length < consumed) return undefined
  return { value: { methods: Array.from(buf.subarray(2, consumed)) }, consumed }
}

/**
 * Picks the method to answer the greeting with. With `requireAuth` only
 * username/password is acceptable. Without it username/password still wins
 * whenever the client offers it, because on spareband the user name carries
 * targeting (`region-de-session-x`): a client offering both methods has
 * credentials for us, and answering "no authentication" would drop them.
 */
export function chooseMethod (offered: number[], requireAuth: boolean): number {
  if (offered.includes(AuthMethod.UserPass)) return AuthMethod.UserPass
  if (requireAuth) return AuthMethod.NoAcceptable
  if (offered.includes(AuthMethod.NoAuth)) return AuthMethod.NoAuth
  return AuthMethod.NoAcceptable
}

/**
 * RFC 1929 request: VER(1) ULEN UNAME PLEN PASSWD. RFC 1929 says lengths are
 * 1-255, but clients given an empty password send PLEN 0, so zero lengths
 * are accepted here and left to the credential check to refuse.
 */
export function parseUserPass (buf: Uint8Array): Parsed<UserPass> {
  if (buf.length < 1) return undefined
  if (buf[0] !== USERPASS_VERSION) {
    throw new Socks5ProtocolError(`unsupported username/password subnegotiation version ${buf[0]}: expected 1`)
  }
  if (buf.length < 2) return undefined
  const ulen = buf[1]
  if (buf.length < 2 + ulen + 1) return undefined
  const plen = buf[2 + ulen]
  const consumed = 2 + ulen + 1 + plen
  if (buf.length < consumed) return undefined
  const username = decodeUtf8(buf.subarray(2, 2 + ulen), 'SOCKS5 username')
  const password = decodeUtf8(buf.subarray(3 + ulen, consumed), 'SOCKS5 password')
  return { value: { username, password }, consumed }
}

/** Length of DST.ADDR once the ATYP (and, for domains, the length byte) is known. */
function addressLength (buf: Uint8Array): number | undefined {
  switch (buf[3]) {
    case AddressType.IPv4: return 4
    case AddressType.IPv6: return 16
    case AddressType.Domain: {
      if (buf.length < 5) return undefined
      if (buf[4] === 0) throw new Socks5ProtocolError('SOCKS5 request has an empty domain name', Reply.GeneralFailure)
      return 1 + buf[4]
    }
    default:
      throw new Socks5ProtocolError(`SOCKS5 address type ${buf[3]} is not supported: expected 1 (IPv4), 3 (domain) or 4 (IPv6)`, Reply.AddressTypeNotSupported)
  }
}

/**
 * Domain names are passed on as sent, but bytes that never occur in a host
 * name (controls, space, DEL) are refused so they cannot reach logs or
 * resolvers.
 */
function decodeDomain (bytes: Uint8Array): string {
  for (const b of bytes) {
    if (b <= 0x20 || b === 0x7f) {
      throw new Socks5ProtocolError('SOCKS5 domain name contains control characters or spaces', Reply.GeneralFailure)
    }
  }
  return decodeUtf8(bytes, 'SOCKS5 domain name', Reply.GeneralFailure)
}

/** RFC 5952 text form: lower-case hex, longest run (>= 2) of zero groups as "::", first one on ties. */
export function formatIPv6 (bytes: Uint8Array): string {
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1])
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) { bestStart = i; bestLen = j - i }
    i = j
  }
  const hex = (g: number[]): string => g.map(n => n.toString(16)).join(':')
  if (bestStart < 0) return hex(groups)
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`
}

function decodeAddress (type: number, bytes: Uint8Array): Pick<ConnectRequest, 'host' | 'addressType'> {
  if (type === AddressType.IPv4) return { host: Array.from(bytes).join('.'), addressType: 'ipv4' }
  if (type === AddressType.IPv6) return { host: formatIPv6(bytes), addressType: 'ipv6' }
  return { host: decodeDomain(bytes.subarray(1)), addressType: 'domain' }
}

/**
 * Request: VER CMD RSV ATYP DST.ADDR DST.PORT. Any command parses (the
 * caller answers non-CONNECT ones with CommandNotSupported); port 0 is only
 * refused for CONNECT, because BIND and UDP ASSOCIATE legitimately send
 * 0.0.0.0:0 when the client does not know its address yet.
 */
export function parseRequest (buf: Uint8Array): Parsed<ConnectRequest> {
  if (buf.length < 1) return undefined
  if (buf[0] !== SOCKS_VERSION) {
    throw new Socks5ProtocolError(`unsupported SOCKS version ${buf[0]} in request: expected 5`, Reply.GeneralFailure)
  }
  if (buf.length < 3) return undefined
  if (buf[2] !== 0) throw new Socks5ProtocolError('SOCKS5 request reserved byte must be 0', Reply.GeneralFailure)
  if (buf.length < 4) return undefined
  const addrLen = addressLength(buf)
  if (addrLen === undefined) return undefined
  const consumed = 4 + addrLen + 2
  if (buf.length < consumed) return undefined

  const command = buf[1]
  const port = (buf[consumed - 2] << 8) | buf[consumed - 1]
  if (port === 0 && command === Command.Connect) {
    throw new Socks5ProtocolError('SOCKS5 CONNECT to port 0', Reply.GeneralFailure)
  }
  const address = decodeAddress(buf[3], buf.subarray(4, 4 + addrLen))
  return { value: { command, ...address, port }, consumed }
}

function checkByte (n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xff) throw new RangeError(`${what} ${n} is not a byte`)
}

/** Server method selection: VER METHOD. */
export function encodeMethodSelection (method: number): Uint8Array {
  checkByte(method, 'SOCKS5 method')
  return Uint8Array.of(SOCKS_VERSION, method)
}

/** RFC 1929 status: VER STATUS, where any non-zero status means failure. */
export function encodeUserPassStatus (ok: boolean): Uint8Array {
  return Uint8Array.of(USERPASS_VERSION, ok ? 0x00 : 0x01)
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

function parseIPv4 (host: string): Uint8Array | undefined {
  if (!IPV4.test(host)) return undefined
  return Uint8Array.from(host.split('.'), Number)
}

/** IPv6 text (with or without brackets or zone) to 16 bytes; `undefined` if not IPv6. */
export function parseIPv6 (host: string): Uint8Array | undefined {
  let text = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  const zone = text.indexOf('%')
  if (zone >= 0) text = text.slice(0, zone)
  if (!text.includes(':')) return undefined
  let canonical: string
  try {
    // The WHATWG URL parser validates the address and rewrites embedded IPv4
    // into hex groups, which leaves a form that is simple to expand
    canonical = new URL(`http://[${text}]/`).hostname.slice(1, -1)
  } catch {
    return undefined
  }
  const [head, tail] = canonical.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length
  const groups = [...headGroups, ...new Array<string>(zeros).fill('0'), ...tailGroups]
  const out = new Uint8Array(16)
  groups.forEach((g, i) => {
    const n = parseInt(g, 16)
    out[2 * i] = n >> 8
    out[2 * i + 1] = n & 0xff
  })
  return out
}

function encodeAddress (host: string): Uint8Array {
  const v4 = parseIPv4(host)
  if (v4 !== undefined) return Uint8Array.of(AddressType.IPv4, ...v4)
  const v6 = parseIPv6(host)
  if (v6 !== undefined) return Uint8Array.of(AddressType.IPv6, ...v6)
  const name = utf8Encoder.encode(host)
  if (name.length < 1 || name.length > 255) throw new RangeError(`SOCKS5 bind host "${host}" must be 1-255 bytes`)
  return Uint8Array.of(AddressType.Domain, name.length, ...name)
}

/**
 * Reply: VER REP RSV ATYP BND.ADDR BND.PORT. The bind address defaults to
 * 0.0.0.0:0, which clients accept when the real one is not meaningful (here
 * the outgoing connection is made by a remote exit).
 */
export function encodeReply (reply: number, bind: { host: string, port: number } = { host: '0.0.0.0', port: 0 }): Uint8Array {
  checkByte(reply, 'SOCKS5 reply code')
  if (!Number.isInteger(bind.port) || bind.port < 0 || bind.port > 0xffff) {
    throw new RangeError(`SOCKS5 bind port ${bind.port} is out of range 0-65535`)
  }
  return Uint8Array.of(SOCKS_VERSION, reply, 0x00, ...encodeAddress(bind.host), bind.port >> 8, bind.port & 0xff)
}
