/**
 * HTTP/1.x forward-proxy request heads for the local proxy ingress: parsing
 * (RFC 9112 message syntax, RFC 9110 semantics), CONNECT authority-form and
 * absolute-form targets, Basic Proxy-Authorization (RFC 7617), rebuilding the
 * head to forward in origin-form, and the proxy's own short responses.
 *
 * Everything here is pure and incremental: `parseRequestHead` takes the bytes
 * received so far and returns `undefined` until the blank line ending the
 * head arrives, or throws `HttpProxyProtocolError` (carrying the status to
 * answer with) as soon as the bytes cannot become a valid head. Parsing is
 * strict on purpose: a proxy that reads a message differently from the
 * origin invites request smuggling.
 */

export class HttpProxyProtocolError extends Error {
  static name = 'HttpProxyProtocolError'
  /** Status to answer with: 400, 405, 414, 431 or 505. */
  readonly status: number

  constructor (status: number, message = 'Invalid HTTP proxy request') {
    super(message)
    this.name = 'HttpProxyProtocolError'
    this.status = status
  }
}

/** Largest request head (request line, headers and blank line) accepted. */
export const MAX_HEAD_BYTES = 16 * 1024

/** Longest request-target accepted; longer ones get 414. */
export const MAX_TARGET_BYTES = 8 * 1024

export interface RequestHead {
  method: string
  target: string
  version: '1.0' | '1.1'
  /** Names lower-cased, values trimmed, order kept. Decoded as latin1, so bytes round-trip. */
  headers: Array<[string, string]>
  /** The same headers' names as the client spelled them (`User-Agent`), forwarded so. */
  names: string[]
  /** Bytes up to and including the blank line. */
  headBytes: number
}

export interface ProxyTarget {
  /** Lower-case name, dotted IPv4 or RFC 5952 IPv6 without brackets. */
  host: string
  port: number
}

export interface AbsoluteTarget extends ProxyTarget {
  /** Origin-form path including the query, at least "/". */
  path: string
}

const LF = 0x0a
const CR = 0x0d
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const TOKEN_CHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/
// field-value: VCHAR, obs-text, SP and HTAB; any other control is refused
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
const VCHARS = /^[\x21-\x7e]+$/
const HTTP_VERSION = /^HTTP\/\d(\.\d)?$/

/** Bytes to string one char per byte, so string lengths are byte counts and values re-encode unchanged. */
function latin1 (buf: Uint8Array, start: number, end: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString('latin1')
}

function fail (status: number, message: string): never {
  throw new HttpProxyProtocolError(status, message)
}

/** RFC 9112 §2.2: empty lines before the request line are ignored. Returns where the request line starts, or undefined if a lone CR leaves it open. */
function skipLeadingEmptyLines (buf: Uint8Array): number | undefined {
  let i = 0
  while (i < buf.length) {
    if (buf[i] === LF) i++
    else if (buf[i] === CR && i + 1 >= buf.length) return undefined
    else if (buf[i] === CR && buf[i + 1] === LF) i += 2
    else break
  }
  return i
}

/** Rejects what is clearly not HTTP (a TLS ClientHello, SOCKS) before its first line ends. */
function checkPartialRequestLine (line: string): void {
  const space = line.indexOf(' ')
  const method = space < 0 ? line : line.slice(0, space)
  for (const ch of method) {
    if (!TOKEN_CHAR.test(ch)) fail(400, 'request line does not start with an HTTP method')
  }
}

function parseVersion (text: string): '1.0' | '1.1' {
  if (text === 'HTTP/1.1') return '1.1'
  if (text === 'HTTP/1.0') return '1.0'
  if (HTTP_VERSION.test(text)) fail(505, `${text} is not supported: the proxy speaks HTTP/1.0 and HTTP/1.1`)
  return fail(400, 'malformed HTTP version in request line')
}

function parseRequestLine (line: string): Pick<RequestHead, 'method' | 'target' | 'version'> {
  // Exactly single spaces: lenient splitting is a classic smuggling vector
  const parts = line.split(' ')
  if (parts.length === 2 && parts[1] !== '') fail(400, 'request line has no HTTP version (HTTP/0.9 is not supported)')
  if (parts.length !== 3) fail(400, 'malformed request line: expected "METHOD target HTTP/1.1"')
  const [method, target, version] = parts
  if (!TOKEN.test(method)) fail(400, 'malformed method in request line')
  if (target.length > MAX_TARGET_BYTES) fail(414, `request target is longer than ${MAX_TARGET_BYTES} bytes`)
  if (!VCHARS.test(target)) fail(400, 'request target is empty or contains invalid characters')
  return { method, target, version: parseVersion(version) }
}

function parseHeaderLine (line: string): [string, string] {
  if (line[0] === ' ' || line[0] === '\t') fail(400, 'obsolete line folding in headers is not accepted')
  const colon = line.indexOf(':')
  if (colon < 0) fail(400, 'header line without a colon')
  // A space before the colon makes the name a non-token: RFC 9112 §5.1 says reject
  const name = line.slice(0, colon)
  if (!TOKEN.test(name)) fail(400, 'invalid header name')
  const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')
  if (!FIELD_VALUE.test(value)) fail(400, `header ${name} contains control characters`)
  return [name.toLowerCase(), value]
}

/** Framing checks that keep this proxy and the origin agreeing where the body ends. */
function checkFraming (headers: Array<[string, string]>): void {
  let hosts = 0
  const lengths = new Set<string>()
  let chunked = false
  const codings: string[] = []
  for (const [name, value] of headers) {
    if (name === 'host') hosts++
    else if (name === 'content-length') value.split(',').forEach(v => lengths.add(v.trim()))
    else if (name === 'transfer-encoding') {
      chunked = true
      codings.push(...value.split(',').map(v => v.trim().toLowerCase()).filter(v => v !== ''))
    }
  }
  // RFC 9112 §6.3: a request whose last transfer coding is not chunked has no knowable length
  if (chunked && codings.at(-1) !== 'chunked') fail(400, 'Transfer-Encoding must end with chunked')
  if (hosts > 1) fail(400, 'more than one Host header')
  if (lengths.size > 1) fail(400, 'conflicting Content-Length headers')
  for (const length of lengths) {
    if (!/^\d{1,15}$/.test(length)) fail(400, 'invalid Content-Length')
  }
  if (chunked && lengths.size > 0) fail(400, 'both Transfer-Encoding and Content-Length are present')
}

function tooLarge (lineStart: number, start: number): never {
  // Nothing but the request line so far means the target itself is too long
  if (lineStart === start) fail(414, `request line is longer than ${MAX_HEAD_BYTES} bytes`)
  return fail(431, `request head is larger than ${MAX_HEAD_BYTES} bytes`)
}

/**
 * Parses a request head. Accepts CRLF and bare LF line endings. Lines that
 * are complete are validated immediately, so garbage is refused early.
 */
export function parseRequestHead (buf: Uint8Array): RequestHead | undefined {
  const start = skipLeadingEmptyLines(buf)
  if (start === undefined) return undefined
  // Only the first MAX_HEAD_BYTES count: a head must end within them
  const limit = Math.min(buf.length, MAX_HEAD_BYTES)
  const scan = buf.subarray(0, limit)
  let requestLine: Pick<RequestHead, 'method' | 'target' | 'version'> | undefined
  const headers: Array<[string, string]> = []
  const names: string[] = []
  let lineStart = start

  for (;;) {
    const lf = scan.indexOf(LF, lineStart)
    if (lf < 0) break
    const end = lf > lineStart && buf[lf - 1] === CR ? lf - 1 : lf
    const line = latin1(buf, lineStart, end)
    if (line.includes('\r')) fail(400, 'stray CR in request head')
    lineStart = lf + 1
    if (requestLine === undefined) {
      requestLine = parseRequestLine(line)
    } else if (line === '') {
      checkFraming(headers)
      return { ...requestLine, headers, names, headBytes: lineStart }
    } else {
      headers.push(parseHeaderLine(line))
      names.push(line.slice(0, line.indexOf(':')))
    }
  }

  if (requestLine === undefined) checkPartialRequestLine(latin1(buf, start, limit))
  if (buf.length >= MAX_HEAD_BYTES) tooLarge(lineStart, start)
  return undefined
}

/** First value of a header, by case-insensitive name. */
export function getHeader (head: RequestHead, name: string): string | undefined {
  const lower = name.toLowerCase()
  return head.headers.find(([n]) => n === lower)?.[1]
}

function parsePort (text: string): number {
  if (!/^\d{1,5}$/.test(text)) fail(400, `invalid port "${text}"`)
  const port = Number(text)
  if (port < 1 || port > 65535) fail(400, `port ${port} is out of range 1-65535`)
  return port
}

// reg-name without percent-encoding, which no real host name needs
const REG_NAME = /^[A-Za-z0-9\-._~!$&'()*+,;=]+$/

/**
 * Normalises a host through the WHATWG URL parser: lower-cases names and
 * turns odd IPv4 spellings (`0x7f.1`, `2130706433`) into dotted quads, so an
 * exit policy sees the address a resolver would connect to.
 */
function normaliseHost (host: string): string {
  const bracketed = host.startsWith('[') && host.endsWith(']')
  if (bracketed ? /[^0-9A-Fa-f:.]/.test(host.slice(1, -1)) : !REG_NAME.test(host)) {
    fail(400, `invalid host "${host}"`)
  }
  let hostname: string
  try {
    hostname = new URL(`http://${host}/`).hostname
  } catch {
    return fail(400, `invalid host "${host}"`)
  }
  if (hostname === '') fail(400, `invalid host "${host}"`)
  return bracketed ? hostname.slice(1, -1) : hostname
}

/** Splits `host[:port]` / `[v6][:port]`; the port text is undefined when absent. */
function splitAuthority (authority: string): { host: string, port?: string } {
  if (authority.includes('@')) fail(400, 'user info in the request target is not accepted: use Proxy-Authorization')
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']')
    if (close < 0) fail(400, `unterminated IPv6 address in "${authority}"`)
    const rest = authority.slice(close + 1)
    if (rest !== '' && !rest.startsWith(':')) fail(400, `malformed authority "${authority}"`)
    return { host: authority.slice(0, close + 1), port: rest === '' ? undefined : rest.slice(1) }
  }
  const colon = authority.lastIndexOf(':')
  if (colon < 0) return { host: authority }
  return { host: authority.slice(0, colon), port: authority.slice(colon + 1) }
}

/** CONNECT target in authority-form: `host:port` or `[v6]:port`, port required. */
export function parseConnectTarget (target: string): ProxyTarget {
  const { host, port } = splitAuthority(target)
  if (port === undefined) fail(400, `CONNECT target "${target}" needs a port, e.g. example.com:443`)
  return { host: normaliseHost(host), port: parsePort(port) }
}

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^#]*)$/

/** Absolute-form target `http://host[:port]/path?query`; the default port is 80. */
export function parseAbsoluteTarget (target: string): AbsoluteTarget {
  const match = ABSOLUTE.exec(target)
  if (match === null) fail(400, 'request target must be an absolute http:// URL (or use CONNECT)')
  const [, scheme, authority, rest] = match
  const lower = scheme.toLowerCase()
  if (lower === 'https') fail(400, 'https:// URLs cannot be proxied in absolute form: use CONNECT host:443')
  if (lower !== 'http') fail(400, `unsupported scheme "${scheme}": only http:// (or CONNECT) is proxied`)
  const { host, port } = splitAuthority(authority)
  // RFC 3986 allows an empty port, meaning the default
  const portNumber = port === undefined || port === '' ? 80 : parsePort(port)
  const path = rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest
  return { host: normaliseHost(host), port: portNumber, path }
}

// Fatal: credentials that are not valid UTF-8 are malformed, not "close enough"
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** `Basic base64(user:pass)` (RFC 7617). The password may contain ':'. Anything malformed gives undefined. */
export function parseProxyAuthorization (value: string | undefined): { username: string, password: string } | undefined {
  if (value === undefined) return undefined
  const match = /^basic[ ]+([A-Za-z0-9+/]+={0,2})[ ]*$/i.exec(value)
  if (match === null) return undefined
  const encoded = match[1]
  // Unpadded base64 is tolerated, but a length of 4n+1 is never valid
  if (encoded.length % 4 === 1 || (encoded.includes('=') && encoded.length % 4 !== 0)) return undefined
  let decoded: string
  try {
    decoded = utf8.decode(Buffer.from(encoded, 'base64'))
  } catch {
    return undefined
  }
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  // RFC 7617: neither part may contain control characters
  if (/[\x00-\x1f\x7f]/.test(decoded)) return undefined
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

const HOP_BY_HOP = new Set(['proxy-authorization', 'proxy-connection', 'connection', 'keep-alive', 'te', 'trailer', 'upgrade'])
// The body is relayed as raw bytes, so the origin must see the framing the
// client sent; Connection may not name these away
const NEVER_DROPPED = new Set(['host', 'content-length', 'transfer-encoding'])

function hostHeader (target: ProxyTarget): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host
  return target.port === 80 ? host : `${host}:${target.port}`
}

/** Header names listed in Connection, which are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionOptions (head: RequestHead): Set<string> {
  const names = new Set<string>()
  for (const [name, value] of head.headers) {
    if (name !== 'connection' && name !== 'proxy-connection') continue
    for (const option of value.split(',')) {
      const lower = option.trim().toLowerCase()
      if (lower !== '' && !NEVER_DROPPED.has(lower)) names.add(lower)
    }
  }
  return names
}

/**
 * Rebuilds the request head to forward to the origin in origin-form: drops
 * hop-by-hop headers (Proxy-Authorization, Proxy-Connection, Connection and
 * the headers it names, Keep-Alive, TE, Trailer, Upgrade), adds
 * `Connection: close`, ensures Host. The client's HTTP version is kept so an
 * HTTP/1.0 client is not sent a chunked response it cannot read, and so are
 * its header names as it spelled them and their order: origins that tell
 * browsers from bots look at both (every browser sends `User-Agent`, not
 * `user-agent`, over HTTP/1.1).
 */
export function buildOriginRequestHead (head: RequestHead, target: AbsoluteTarget): Uint8Array {
  const dropped = connectionOptions(head)
  // RFC 9112 §3.2.2: with an absolute-form target, Host comes from the target
  const lines = [`${head.method} ${target.path} HTTP/${head.version}`, `Host: ${hostHeader(target)}`]
  head.headers.forEach(([name, value], i) => {
    if (name === 'host' || HOP_BY_HOP.has(name) || dropped.has(name)) return
    lines.push(`${head.names[i] ?? name}: ${value}`)
  })
  lines.push('Connection: close', '', '')
  return Buffer.from(lines.join('\r\n'), 'latin1')
}

function checkHeaderText (text: string, what: string): void {
  if (/[\r\n\0]/.test(text)) throw new RangeError(`${what} must not contain CR, LF or NUL`)
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  402: 'Payment Required',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  414: 'URI Too Long',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported'
}

/** The reason phrase of a status the proxy answers with. */
export function reasonPhrase (status: number): string {
  return REASONS[status] ?? 'Error'
}

/** A complete short response from the proxy itself; the connection is closed after it. */
export function encodeResponse (status: number, reason: string, body: string, extraHeaders: Array<[string, string]> = []): Uint8Array {
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new RangeError(`invalid HTTP status ${status}`)
  checkHeaderText(reason, 'reason phrase')
  const bodyBytes = Buffer.from(body, 'utf8')
  const lines = [
    `HTTP/1.1 ${status} ${reason}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${bodyBytes.length}`,
    'Connection: close'
  ]
  for (const [name, value] of extraHeaders) {
    if (!TOKEN.test(name)) throw new RangeError(`invalid header name "${name}"`)
    checkHeaderText(value, `header ${name}`)
    lines.push(`${name}: ${value}`)
  }
  lines.push('', '')
  return Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), bodyBytes])
}
