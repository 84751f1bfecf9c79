/**
 * The dashboard at `/` of a real control API on loopback: served without a
 * token but with headers that let only its own inline code run, only to a
 * Host that names this machine; the JSON routes still need the token.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { request } from 'node:http'
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ControlApi } from '../../src/node/control-api.ts'
import { renderDashboard } from '../../src/node/dashboard/index.ts'
import { isLocalHostHeader } from '../../src/node/dashboard/security.ts'
import type { IncomingHttpHeaders } from 'node:http'

interface Answer { status: number, headers: IncomingHttpHeaders, body: string }

/** node:http, not fetch: fetch will not send a Host header of our choosing. */
async function get (api: ControlApi, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const { port } = api.address!
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, method }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', c => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

const apis: ControlApi[] = []
afterEach(async () => {
  for (const api of apis.splice(0)) await api.stop()
})

async function startApi (dashboard = true): Promise<{ api: ControlApi, token: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sb-control-api-'))
  const api = new ControlApi({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    peerId: 'x',
    routes: { status: { get: () => ({ up: true }) } },
    dashboard: dashboard ? renderDashboard : undefined
  })
  apis.push(api)
  await api.start()
  return { api, token: (await readFile(join(dataDir, 'api-token'), 'utf8')).trim() }
}

describe('the dashboard route', () => {
  it('serves the page without a token, with a strict CSP whose nonce is on every inline tag; /v1/status still needs the token', async () => {
    const { api, token } = await startApi()
    const page = await get(api, '/')
    expect(page.status).toBe(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.headers['x-frame-options']).toBe('DENY')
    expect(page.headers['referrer-policy']).toBe('no-referrer')
    expect(page.headers['x-content-type-options']).toBe('nosniff')
    expect(page.headers['cache-control']).toBe('no-store')

    const csp = String(page.headers['content-security-policy'])
    const directives = Object.fromEntries(csp.split(';').map(d => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values]))
    expect(directives['default-src']).toEqual(["'none'"])
    expect(directives['frame-ancestors']).toEqual(["'none'"])
    expect(directives['connect-src']).toEqual(["'self'"])
    expect(directives['form-action']).toEqual(["'none'"])
    const nonce = /^'nonce-([A-Za-z0-9+/=]{22,})'$/.exec(directives['script-src']?.[0] ?? '')?.[1]
    expect(nonce, csp).toBeDefined()
    expect(directives['script-src']).toHaveLength(1)
    expect(directives['style-src']).toEqual([`'nonce-${nonce}'`])
    expect(csp).not.toMatch(/unsafe|https?:|\*/)

    // uPlot and client.js inline, each tag with the nonce; nothing loaded from elsewhere
    const tags = [...page.body.matchAll(/<(script|style)\b([^>]*)>/g)]
    expect(tags.map(t => t[1]).sort()).toEqual(['script', 'script', 'style', 'style'])
    for (const t of tags) expect(t[2]).toContain(`nonce="${nonce}"`)
    expect(page.body.split(nonce!).length - 1).toBe(tags.length)
    expect(page.body).not.toMatch(/<(script|link|img)\b[^>]*\b(src|href)="(?!data:)/)
    expect(page.body).toContain('uPlot')
    expect(page.body).not.toContain(token)

    // a new nonce each time
    const again = await get(api, '/')
    expect(again.headers['content-security-policy']).not.toBe(csp)

    const refused = await get(api, '/v1/status')
    expect(refused.status).toBe(401)
    expect(refused.headers['www-authenticate']).toBe('Bearer')
    const ok = await get(api, '/v1/status', { authorization: `Bearer ${token}` })
    expect(ok.status).toBe(200)
    expect(JSON.parse(ok.body)).toEqual({ up: true })
  })

  it('answers a Host that is not this machine with 403 (DNS rebinding), and loopback names with the page', async () => {
    const { api } = await startApi()
    const { port } = api.address!
    const rebound = await get(api, '/', { host: `evil.example:${port}` })
    expect(rebound.status).toBe(403)
    expect(rebound.body).toContain('DNS rebinding')
    expect(rebound.body).not.toContain('<script')
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'dash.localhost']) {
      expect((await get(api, '/', { host })).status, host).toBe(200)
    }
  })

  it('takes request targets as paths only, says which methods a route takes, and answers HEAD / with the page\'s headers', async () => {
    const { api, token } = await startApi()
    const auth = { authorization: `Bearer ${token}` }
    // resolved against a base URL, "//evil.example/v1/status" was served as /v1/status, and "//" was a 500
    for (const path of ['//evil.example/v1/status', '//', '//evil.example/']) {
      const r = await get(api, path, auth)
      expect(r.status, path).toBe(404)
      expect(JSON.parse(r.body).error).toBe(`no such endpoint: ${path}`)
    }
    // absolute-form, which HTTP/1.1 servers must take: its path
    const absolute = await get(api, `http://127.0.0.1:${api.address!.port}/v1/status`, auth)
    expect(absolute.status).toBe(200)
    expect(JSON.parse(absolute.body)).toEqual({ up: true })
    const neither = await get(api, '*', auth, 'OPTIONS')
    expect(neither.status).toBe(400)
    expect(JSON.parse(neither.body).error).toMatch(/^the request target must be a path such as \/v1\/status/)
    const wrongMethod = await get(api, '/v1/status', auth, 'DELETE')
    expect(wrongMethod.status).toBe(405)
    expect(wrongMethod.headers.allow).toBe('GET, HEAD')
    const head = await get(api, '/', {}, 'HEAD')
    expect(head.status).toBe(200)
    expect(head.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(head.body).toBe('')
    // HEAD of a JSON route: its headers (it was 405 with Allow: GET)
    const headStatus = await get(api, '/v1/status', auth, 'HEAD')
    expect([headStatus.status, headStatus.headers['content-type'], headStatus.body]).toEqual([200, 'application/json', ''])
    // the page's path takes no other method (it was a 404, "no such endpoint: /")
    for (const headers of [auth, {}]) {
      const post = await get(api, '/', headers, 'POST')
      expect(post.status).toBe(405)
      expect(post.headers.allow).toBe('GET, HEAD')
    }
    // a parameter given twice: which one was meant is not guessed (the first was taken)
    const twice = await get(api, '/v1/status?limit=1&limit=2', auth)
    expect(twice.status).toBe(400)
    expect(JSON.parse(twice.body).error).toBe('the query gives limit more than once')
  })

  it('without a dashboard, / is an API path like any other: 401 without the token', async () => {
    const { api } = await startApi(false)
    expect((await get(api, '/')).status).toBe(401)
  })
})

describe('isLocalHostHeader', () => {
  it('takes IP literals, localhost and the configured host; refuses other names and anything malformed', () => {
    for (const host of ['127.0.0.1', '127.0.0.1:7070', '192.168.1.20:7070', '[::1]:7070', '[fe80::1]', 'localhost', 'LOCALHOST:80', 'localhost.', 'a.localhost:7070', 'mybox.lan:7070']) {
      expect(isLocalHostHeader(host, 'mybox.lan'), host).toBe(true)
    }
    for (const host of [undefined, '', 'evil.example', 'evil.example:7070', '127.0.0.1.nip.io', 'localhost.evil.example', 'evil.example@127.0.0.1', '[evil.example]', '127.0.0.1:7070/x', 'mybox.lan.evil.example']) {
      expect(isLocalHostHeader(host, 'mybox.lan'), String(host)).toBe(false)
    }
  })
})

describe('the token', () => {
  const start = async (dataDir: string): Promise<ControlApi> => {
    const api = new ControlApi({ dataDir, host: '127.0.0.1', port: 0, peerId: 'x', routes: { status: { get: () => ({ up: true }) } } })
    apis.push(api)
    await api.start()
    return api
  }

  it('is made 0600 when there is none or the file is empty; an operator\'s own is kept and works', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sb-control-api-'))
    await writeFile(join(dataDir, 'api-token'), '\n')
    const made = await start(dataDir)
    const token = (await readFile(join(dataDir, 'api-token'), 'utf8')).trim()
    expect(token).toMatch(/^[0-9a-f]{64}$/)
    expect((await stat(join(dataDir, 'api-token'))).mode & 0o777).toBe(0o600)
    await made.stop()
    const own = 'correct-horse-battery-staple'
    await writeFile(join(dataDir, 'api-token'), `${own}\n`)
    const api = await start(dataDir)
    expect((await get(api, '/v1/status', { authorization: `Bearer ${own}` })).status).toBe(200)
    expect((await readFile(join(dataDir, 'api-token'), 'utf8')).trim()).toBe(own)
  })

  it('one the API could never take is refused at start, and left as it is: too short (it was replaced without a word), or with a space (every request was refused)', async () => {
    for (const [bad, said] of [['hunter2', /holds a token the control API cannot take: it needs 16 or more printable characters, without spaces \(it has 7\)/], ['this token has spaces in it 1234', /\(it has 32, with spaces\)/]] as const) {
      const dataDir = await mkdtemp(join(tmpdir(), 'sb-control-api-'))
      await writeFile(join(dataDir, 'api-token'), `${bad}\n`)
      const api = new ControlApi({ dataDir, host: '127.0.0.1', port: 0, peerId: 'x', routes: {} })
      await expect(api.start()).rejects.toThrow(said)
      expect(await readFile(join(dataDir, 'api-token'), 'utf8')).toBe(`${bad}\n`)
    }
  })
})
