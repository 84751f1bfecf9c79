/**
 * `spareband probe --region R URL`: one HTTP(S) GET through an exit of a
 * region, timed in its phases, for regional content checks and latency
 * probes. TLS runs end to end, here, over the tunnel: the exit sees only
 * ciphertext, and the certificate is checked against the URL's host.
 */

import { connect as tlsConnect } from 'node:tls'
import { request } from 'node:http'
import { createHash } from 'node:crypto'
import { isIP } from 'node:net'
import { TunnelRefusedError } from '../errors.ts'
import { AGENT_NAME, VERSION, hour } from '../constants.ts'
import { raceAbort } from '../race-abort.ts'
import type { AppConnectOptions, TunnelSocket } from './app-connect.ts'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'

export type Connect = (host: string, port: number, options: AppConnectOptions) => Promise<TunnelSocket>

export interface ProbeOptions {
  region?: string
  session?: string
  /** The whole probe, from asking for a tunnel to the last byte. @default 30000 */
  timeoutMs?: number
  /** Accept a certificate that does not check out (a testnet's self-signed origin), as curl -k does. */
  insecure?: boolean
  /** PEM certificates to trust instead of Node's bundled CAs (a testnet's own CA), as curl --cacert. */
  ca?: string
}

/** Milliseconds from the start of the probe. */
export interface ProbeTimings {
  /** The exit answered: it found an exit, resolved the name and connected to the target. */
  tunnelMs: number
  /** The TLS handshake with the target finished (https only). */
  tlsMs?: number
  /** The response's status line and headers arrived. */
  firstByteMs: number
  /** The body's last byte arrived. */
  totalMs: number
}

export type ProbeResult = {
  ok: true
  url: string
  region?: string
  exit: string
  status: number
  statusText: string
  httpVersion: string
  /** Body bytes, as received (after no decoding: the probe asks for none). */
  bytes: number
  sha256: string
  headers: Record<string, string>
  tls?: { protocol: string, cipher: string, authorized: boolean, authorizationError?: string }
  timings: ProbeTimings
} | {
  ok: false
  url: string
  region?: string
  /** The exit that refused the tunnel, or that carried it before the probe failed; none for NO_EXIT. */
  exit?: string
  /** The exit's refusal (POLICY_DENIED, DNS_FAILED, NO_EXIT, ...), TLS, TIMEOUT or HTTP. */
  failure: string
  error: string
  timings: Partial<ProbeTimings>
}

/** Response headers a probe reports (others vary per request and say little about the region). */
const REPORTED_HEADERS = ['server', 'content-type', 'content-length', 'content-language', 'location', 'via', 'cache-control', 'age', 'date']
export const DEFAULT_PROBE_TIMEOUT_MS = 30_000
/**
 * The longest a probe may be given. Far below what a timer takes (2^31 - 1
 * ms, 24.8 days: past it Node fires at once, with a TimeoutOverflowWarning,
 * and AbortSignal.timeout() throws beyond 2^32 ms), and an hour is longer
 * than any one GET worth timing.
 */
export const MAX_PROBE_TIMEOUT_MS = hour

export class ProbeInputError extends TypeError {
  static name = 'ProbeInputError'
  constructor (message: string) {
    super(message)
    this.name = 'ProbeInputError'
  }
}

/** Checks a probe's URL: http or https, a host, no credentials. */
export function parseProbeUrl (raw: string): URL {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ProbeInputError(`"${raw}" is not a URL; give one like https://example.org/`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ProbeInputError(`"${raw}" is ${url.protocol.slice(0, -1)}: a probe fetches http:// or https:// URLs`)
  if (url.username !== '' || url.password !== '') throw new ProbeInputError('a probe URL carries no user name or password')
  return url
}

export async function probe (connect: Connect, rawUrl: string, options: ProbeOptions = {}): Promise<ProbeResult> {
  const url = parseProbeUrl(rawUrl)
  const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_PROBE_TIMEOUT_MS) throw new ProbeInputError(`timeout must be a positive number of milliseconds up to ${MAX_PROBE_TIMEOUT_MS}, not ${String(options.timeoutMs)}`)
  const https = url.protocol === 'https:'
  // URL keeps IPv6 literals in brackets; the tunnel and TLS want the bare address
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  const port = url.port === '' ? (https ? 443 : 80) : Number(url.port)
  const started = performance.now()
  const since = (): number => Math.round((performance.now() - started) * 100) / 100
  const timings: Partial<ProbeTimings> = {}
  const signal = AbortSignal.timeout(timeoutMs)
  const base = { url: url.href, region: options.region }
  let tunnel: TunnelSocket | undefined
  let stream: Duplex | undefined
  try {
    // a tunnel that comes after the timeout is ended by connect() itself, which sees the signal
    tunnel = await raceAbort(connect(host, port, { region: options.region, session: options.session, signal }), signal)
    timings.tunnelMs = since()
    stream = tunnel
    let tls: Extract<ProbeResult, { ok: true }>['tls']
    if (https) {
      const secure = tlsConnect({
        socket: tunnel,
        // the certificate is checked against `host` (without it, against "localhost"); SNI takes names only
        host,
        servername: isIP(host) === 0 ? host : undefined,
        rejectUnauthorized: options.insecure !== true,
        ...(options.ca != null ? { ca: options.ca } : {}),
        ALPNProtocols: ['http/1.1']
      })
      stream = secure
      // the handshake's error is the promise's below; one after it (the
      // socket's teardown) has no one to hear it, and must not end the node
      secure.on('error', () => {})
      await raceAbort(new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', resolve)
        secure.once('error', reject)
      }), signal)
      timings.tlsMs = since()
      const cipher = secure.getCipher()
      tls = { protocol: secure.getProtocol() ?? 'unknown', cipher: cipher.standardName ?? cipher.name, authorized: secure.authorized, ...(secure.authorizationError != null ? { authorizationError: String(secure.authorizationError) } : {}) }
    }
    const res = await raceAbort(get(stream, url), signal)
    timings.firstByteMs = since()
    const hash = createHash('sha256')
    let bytes = 0
    await raceAbort(new Promise<void>((resolve, reject) => {
      res.on('data', (c: Buffer) => { hash.update(c); bytes += c.byteLength })
      res.once('end', resolve)
      res.once('error', reject)
      res.once('aborted', () => reject(new Error('the response ended before its body did')))
    }), signal)
    timings.totalMs = since()
    const headers: Record<string, string> = {}
    for (const name of REPORTED_HEADERS) {
      const v = res.headers[name]
      if (v != null) headers[name] = Array.isArray(v) ? v.join(', ') : v
    }
    return {
      ok: true,
      ...base,
      exit: tunnel.exit,
      status: res.statusCode ?? 0,
      statusText: res.statusMessage ?? '',
      httpVersion: res.httpVersion,
      bytes,
      sha256: hash.digest('hex'),
      headers,
      ...(tls != null ? { tls } : {}),
      timings: timings as ProbeTimings
    }
  } catch (err: any) {
    if (err instanceof ProbeInputError || err instanceof TypeError) throw err
    // the exit that carried the tunnel, or the one that refused it (none for NO_EXIT)
    const exit = tunnel?.exit ?? (err instanceof TunnelRefusedError ? err.exit : undefined)
    return { ok: false, ...base, ...(exit != null ? { exit } : {}), failure: failureOf(err, signal, timings, https), error: messageOf(err), timings }
  } finally {
    stream?.destroy()
    tunnel?.destroy()
  }
}

/** One GET on `stream`, resolving at the response's head. */
async function get (stream: Duplex, url: URL): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: url.hostname,
      port: url.port,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers: { 'user-agent': `${AGENT_NAME}-probe/${VERSION}`, accept: '*/*', connection: 'close' },
      // no `agent`: with one (even agent: false), node:http dials the host itself and ignores createConnection
      createConnection: () => stream
    }, resolve)
    req.once('error', reject)
    req.end()
  })
}

function failureOf (err: any, signal: AbortSignal, timings: Partial<ProbeTimings>, https: boolean): string {
  if (err instanceof TunnelRefusedError) return err.status
  if (signal.aborted || err?.name === 'TimeoutError') return 'TIMEOUT'
  // past the tunnel, before TLS was up: the handshake failed (certificate, protocol)
  if (https && timings.tunnelMs != null && timings.tlsMs == null) return 'TLS'
  return 'HTTP'
}

/** Node's advice to restart it with other flags is no help to someone running a probe. */
function messageOf (err: any): string {
  return String(err?.message ?? err).replace(/; if the root CA is installed locally.*$/, '')
}
