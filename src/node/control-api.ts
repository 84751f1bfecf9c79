/**
 * The local control API: JSON under `/v1/`, Prometheus text at `/metrics`,
 * on 127.0.0.1 with a bearer token from the data directory, and the
 * operator dashboard at `/`. The running node writes where it listens to
 * `api.json` so CLI commands find it with only `--data-dir`.
 */

import { modeOpenToOthers, readableByOthersWarning } from './file-modes.ts'
import { createServer } from 'node:http'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFile, writeFile, rm, chmod, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { AddressInUseError, ApiInfoCorruptError, formatHostPort, notOwnAddress } from '../errors.ts'
import { dashboardHeaders, isLocalHostHeader } from './dashboard/security.ts'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export const API_TOKEN_FILE = 'api-token'
export const API_INFO_FILE = 'api.json'

/** What `api.json` holds. */
export interface ApiInfo {
  url: string
  host: string
  port: number
  pid: number
  peerId: string
}

export type RouteHandler = (req: IncomingMessage, body: unknown) => Promise<unknown> | unknown

/**
 * A route's answer written as it is made (an export of many receipts), so
 * the node neither builds it whole in memory nor stops its other work
 * until it is done. The status is sent first: a failure after it cuts the
 * answer short, which the client sees as a broken answer, never a short
 * but well-formed one.
 */
export class StreamedBody {
  constructor (readonly chunks: AsyncIterable<string>, readonly contentType = 'application/json') {}
}

export class HttpError extends Error {
  static name = 'HttpError'
  constructor (readonly status: number, message: string) {
    super(message)
    this.name = 'HttpError'
  }
}

/** A warning while others than the owner can read api-token (made 0600, but a copy gets the mode of the day). */
export function apiTokenModeWarning (dataDir: string): string | undefined {
  const file = join(dataDir, API_TOKEN_FILE)
  const mode = modeOpenToOthers(file)
  return mode == null ? undefined : readableByOthersWarning(file, mode, 'controls this node through its control API (pause, resume, receipts, metrics)')
}

const MIN_TOKEN_LENGTH = 16
/** What a bearer header can carry (see ControlApi.authorized): visible ASCII, no spaces. */
const TOKEN_PATTERN = new RegExp(`^[\\x21-\\x7e]{${MIN_TOKEN_LENGTH},}$`)

export class ApiTokenError extends Error {
  static name = 'ApiTokenError'
  constructor (message: string) {
    super(message)
    this.name = 'ApiTokenError'
  }
}

/**
 * The control API's token: api-token in the data directory, made (0600)
 * when there is none or it is empty. An operator may put a token of their
 * own there; one the API could not take is refused at start.
 */
export async function loadOrCreateApiToken (dataDir: string): Promise<string> {
  const file = join(dataDir, API_TOKEN_FILE)
  try {
    const token = (await readFile(file, 'utf8')).trim()
    if (TOKEN_PATTERN.test(token)) return token
    // an operator's own token the API could never take: a short one was replaced without a word, one with a space refused every request
    if (token !== '') throw new ApiTokenError(`${file} holds a token the control API cannot take: it needs ${MIN_TOKEN_LENGTH} or more printable characters, without spaces (it has ${token.length}${/\s/.test(token) ? ', with spaces' : ''}). Put such a token there, or delete the file and a new one is made at start`)
  } catch (err: any) {
    if (err.code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const token = randomBytes(32).toString('hex')
  await writeFile(file, token + '\n', { mode: 0o600 })
  await chmod(file, 0o600)
  return token
}

export interface ControlApiInit {
  dataDir: string
  host: string
  port: number
  peerId: string
  /** `GET /v1/<name>` and `POST /v1/<name>` routes. */
  routes: Record<string, { get?: RouteHandler, post?: RouteHandler }>
  /** Prometheus exposition text for `/metrics`. */
  metrics?: () => Promise<string> | string
  /**
   * The dashboard page, served without a token (it asks for one, and holds
   * no secret). Its inline script and style tags carry `nonce`, new for each
   * answer, which the page's Content-Security-Policy names.
   */
  dashboard?: (nonce: string) => Promise<string> | string
}

/**
 * The request target's path and query: origin-form ("/v1/status"), or
 * absolute-form ("http://127.0.0.1:7070/v1/status", which HTTP/1.1 servers
 * must take). Resolved against a base URL, "//evil.example/v1/peers" was a
 * host and a path ("/v1/peers" was served) and "//" no URL at all (a 500);
 * here a target is appended to a fixed origin, so those are paths that
 * match no route. Undefined for anything else.
 */
export function requestUrl (target: string): URL | undefined {
  if (target.startsWith('/')) return new URL(`http://localhost${target}`)
  if (!/^https?:\/\//i.test(target)) return undefined
  try {
    const absolute = new URL(target)
    return new URL(`http://localhost${absolute.pathname}${absolute.search}`)
  } catch {
    return undefined
  }
}

export class ControlApi {
  private server?: Server
  private token = ''
  private info?: ApiInfo

  constructor (private readonly init: ControlApiInit) {}

  get address (): ApiInfo | undefined {
    return this.info
  }

  async start (): Promise<void> {
    if (this.server != null) return
    this.token = await loadOrCreateApiToken(this.init.dataDir)
    const server = createServer((req, res) => { void this.handle(req, res) })
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException): void => {
        if (err.code === 'EADDRNOTAVAIL') { reject(notOwnAddress('the control API (api.host)', 'api.host', this.init.host)); return }
        if (err.code !== 'EADDRINUSE') { reject(err); return }
        const address = formatHostPort(this.init.host, this.init.port)
        reject(new AddressInUseError(`the control API (api.port / --api-port): ${address} is in use`, { address }))
      }
      server.once('error', failed)
      server.listen(this.init.port, this.init.host, () => {
        server.off('error', failed)
        resolve()
      })
    })
    this.server = server
    const { port } = server.address() as AddressInfo
    const host = this.init.host
    const urlHost = host.includes(':') ? `[${host}]` : host
    this.info = { url: `http://${urlHost}:${port}`, host, port, pid: process.pid, peerId: this.init.peerId }
    await writeFile(join(this.init.dataDir, API_INFO_FILE), JSON.stringify(this.info, null, 2) + '\n', { mode: 0o600 })
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = undefined
    await rm(join(this.init.dataDir, API_INFO_FILE), { force: true })
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }

  private authorized (req: IncomingMessage): boolean {
    const header = req.headers.authorization ?? ''
    const m = /^Bearer\s+(\S+)$/i.exec(header)
    if (m == null) return false
    const given = Buffer.from(m[1])
    const want = Buffer.from(this.token)
    return given.length === want.length && timingSafeEqual(given, want)
  }

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = requestUrl(req.url ?? '/')
      if (url == null) return sendJson(res, 400, { error: `the request target must be a path such as /v1/status, not ${JSON.stringify((req.url ?? '').slice(0, 100))}` })
      // HEAD: the page's headers (Node's server leaves the body out)
      if (url.pathname === '/' && this.init.dashboard != null) {
        if (req.method === 'GET' || req.method === 'HEAD') return await this.sendDashboard(req, res, this.init.dashboard)
        res.setHeader('Allow', 'GET, HEAD')
        return sendJson(res, 405, { error: `${req.method ?? ''} not allowed on /` })
      }
      if (!this.authorized(req)) {
        res.setHeader('WWW-Authenticate', 'Bearer')
        return sendJson(res, 401, { error: 'missing or wrong bearer token (see api-token in the data directory)' })
      }
      if (url.pathname === '/metrics' && this.init.metrics != null) {
        return send(res, 200, await this.init.metrics(), 'text/plain; version=0.0.4')
      }
      const m = /^\/v1\/([\w/-]+)$/.exec(url.pathname)
      const route = m == null ? undefined : this.init.routes[m[1]]
      if (route == null) return sendJson(res, 404, { error: `no such endpoint: ${url.pathname}` })
      // HEAD is a GET without its body (Node's server leaves it out)
      const method = req.method === 'POST' ? 'post' : req.method === 'GET' || req.method === 'HEAD' ? 'get' : undefined
      const handler = method == null ? undefined : route[method]
      if (handler == null) {
        res.setHeader('Allow', Object.entries(route).filter(([, h]) => h != null).flatMap(([m]) => m === 'get' ? ['GET', 'HEAD'] : [m.toUpperCase()]).join(', '))
        return sendJson(res, 405, { error: `${req.method} not allowed on ${url.pathname}` })
      }
      // a handler reads the first of a repeated parameter: which one the caller meant is not for it to guess
      const repeated = [...new Set(url.searchParams.keys())].find(k => url.searchParams.getAll(k).length > 1)
      if (repeated != null) return sendJson(res, 400, { error: `the query gives ${repeated} more than once` })
      const body = method === 'post' ? await readJson(req) : undefined
      const answer = await handler(req, body)
      if (answer instanceof StreamedBody) return await sendStream(res, answer)
      sendJson(res, 200, answer)
    } catch (err: any) {
      const status = err instanceof HttpError ? err.status : (typeof err.status === 'number' ? err.status : 500)
      sendJson(res, status, { error: err.message ?? String(err) })
    }
  }

  /**
   * The page, to a Host that names this machine only. The routes under /v1/
   * need no such check: a rebinding page cannot know the token.
   */
  private async sendDashboard (req: IncomingMessage, res: ServerResponse, page: (nonce: string) => Promise<string> | string): Promise<void> {
    if (!isLocalHostHeader(req.headers.host, this.init.host)) {
      return send(res, 403, `the dashboard answers only to an IP address, localhost or ${this.init.host} in the Host header, not ${JSON.stringify(req.headers.host ?? '')}: a web page whose own name resolves to this machine (DNS rebinding) must not get it\n`, 'text/plain; charset=utf-8')
    }
    const nonce = randomBytes(16).toString('base64')
    const html = await page(nonce)
    res.writeHead(200, { ...dashboardHeaders(nonce), 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    res.end(html)
  }
}

async function readJson (req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req) {
    size += c.length
    if (size > 64 * 1024) throw new HttpError(413, 'request body too large')
    chunks.push(c)
  }
  if (size === 0) return undefined
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'request body is not valid JSON')
  }
}

function send (res: ServerResponse, status: number, body: string, type: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

async function sendStream (res: ServerResponse, body: StreamedBody): Promise<void> {
  res.writeHead(200, { 'content-type': body.contentType, 'cache-control': 'no-store' })
  try {
    for await (const chunk of body.chunks) {
      // the client went away: leaving the loop stops the producer
      if (res.destroyed) return
      if (!res.write(chunk)) await drainOrClose(res)
    }
    res.end()
  } catch (err: any) {
    res.destroy(err)
  }
}

async function drainOrClose (res: ServerResponse): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

function sendJson (res: ServerResponse, status: number, body: unknown): void {
  send(res, status, JSON.stringify(body, (_k, v) => typeof v === 'bigint' ? v.toString() : v, 2) + '\n', 'application/json')
}

/** How long a reader waits before it reads an api.json that is not whole again: the node writes it in one small write. */
const API_INFO_SETTLE_MS = 200

/** Why `text` is not an api.json as start() writes it; undefined when it is one. */
function apiInfoProblem (text: string): string | undefined {
  let info: any
  try {
    info = JSON.parse(text)
  } catch (err: any) {
    return `not valid JSON: ${String(err.message)}`
  }
  if (typeof info !== 'object' || info == null || Array.isArray(info)) return 'not a JSON object'
  if (typeof info.url !== 'string' || !Number.isInteger(info.pid)) return 'no "url" and "pid" in it'
  return undefined
}

/**
 * Client side, for the CLI: reads `api.json`. Undefined when there is none;
 * one that is not whole is read again a moment later (it may be being
 * written), and one still not an api.json then is an ApiInfoCorruptError.
 * Any other failure to read it (a data directory of another user's,
 * EACCES) is thrown, not taken for "no node runs", which sent the operator
 * of a service to start a second node.
 */
export async function readApiInfo (dataDir: string): Promise<ApiInfo | undefined> {
  const file = join(dataDir, API_INFO_FILE)
  for (let attempt = 0; ; attempt++) {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err: any) {
      if (err?.code === 'ENOENT' || err?.code === 'ENOTDIR') return undefined
      throw err
    }
    const problem = apiInfoProblem(text)
    if (problem == null) return JSON.parse(text) as ApiInfo
    if (attempt > 0) throw new ApiInfoCorruptError(`${file} is corrupt (${problem})`, { file })
    await sleep(API_INFO_SETTLE_MS)
  }
}
