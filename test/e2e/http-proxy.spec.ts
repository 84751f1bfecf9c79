import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, connect } from 'node:net'
import { curl, spawnNode, waitForPeers } from '../utils/network.ts'
import { waitFor } from '../utils/cli.ts'
import type { SpawnedNode } from '../utils/network.ts'
import type { AddressInfo, Server, Socket } from 'node:net'

interface Seen { connection: number, head: string }

/**
 * An origin like many real servers: it keeps every connection open and
 * answers each request on it, whatever Connection header it was sent, and
 * records what arrived on which connection.
 */
async function keepAliveOrigin (name: string): Promise<{ server: Server, port: number, seen: Seen[], close: () => void }> {
  const seen: Seen[] = []
  const sockets = new Set<Socket>()
  let connections = 0
  const server = createServer(socket => {
    const connection = ++connections
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buffered = ''
    let body = 0
    socket.on('data', chunk => {
      buffered += chunk.toString('latin1')
      while (true) {
        if (body > 0) {
          const n = Math.min(body, buffered.length)
          buffered = buffered.slice(n)
          body -= n
          if (body > 0) return
        }
        const end = buffered.indexOf('\r\n\r\n')
        if (end < 0) return
        const head = buffered.slice(0, end)
        buffered = buffered.slice(end + 4)
        body = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
        seen.push({ connection, head })
        const path = head.split('\r\n')[0].split(' ')[1]
        // a server that dies half way through its answer's head
        if (path === '/cut-head') {
          socket.end('HTTP/1.1 200 OK\r\nX-Cut: yes')
          return
        }
        const text = `${name} got ${path}\n`
        socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\nConnection: keep-alive\r\n\r\n${text}`)
      }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port, seen, close: () => { for (const s of sockets) s.destroy(); server.close() } }
}

/**
 * The HTTP proxy's plain requests against origins that ignore
 * `Connection: close`, and clients that half-close early; real exit and
 * consumer processes, real curl.
 */
describe('HTTP proxy: one request per tunnel, early half-close', () => {
  let a: Awaited<ReturnType<typeof keepAliveOrigin>>
  let b: Awaited<ReturnType<typeof keepAliveOrigin>>
  let echo: Server
  let echoPort: number
  let exit: SpawnedNode
  let consumer: SpawnedNode

  beforeAll(async () => {
    [a, b] = await Promise.all([keepAliveOrigin('A'), keepAliveOrigin('B')])
    // counts what it got, and answers only once the client has finished (FIN)
    echo = createServer({ allowHalfOpen: true }, socket => {
      let n = 0
      socket.on('data', chunk => { n += chunk.byteLength })
      socket.on('end', () => socket.end(`got ${n} bytes`))
      socket.on('error', () => {})
    })
    await new Promise<void>(resolve => echo.listen(0, '127.0.0.1', resolve))
    echoPort = (echo.address() as AddressInfo).port
    exit = await spawnNode({ region: 'de', args: ['--allow-private-targets', '--exit-ports', `${a.port},${b.port},${echoPort}`] })
    consumer = await spawnNode({ region: 'jp', args: ['--no-supply', '--bootstrap', exit.addresses[0]] })
    await waitForPeers(consumer, [exit.peerId])
  })
  afterAll(async () => {
    await Promise.all([exit?.proc.kill(), consumer?.proc.kill()])
    a?.close()
    b?.close()
    echo?.close()
  })

  it('sends a kept-alive client\'s next request, for another host, to that host and not to the first one', async () => {
    const r = await curl(['-sS', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de:pw', '-H', 'Cookie: secret=for-b',
      `http://127.0.0.1:${a.port}/first`, `http://localhost:${b.port}/second`,
      '--next', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de:pw', '--data-binary', 'twelve bytes', `http://localhost:${b.port}/third`])
    expect(r.stderr).toBe('')
    expect(r.stdout.toString()).toBe(`A got /first\nB got /second\nB got /third\n`)
    expect(a.seen.map(s => s.head.split('\r\n')[0])).toEqual(['GET /first HTTP/1.1'])
    expect(b.seen.map(s => s.head.split('\r\n')[0])).toEqual(['GET /second HTTP/1.1', 'POST /third HTTP/1.1'])
    // each request on a connection of its own, and no proxy credentials at any origin
    expect(new Set(b.seen.map(s => s.connection)).size).toBe(2)
    for (const s of [...a.seen, ...b.seen]) expect(s.head.toLowerCase()).not.toContain('proxy-authorization')
  })

  it('forwards the client\'s header names as it spelled them, in its order, without the proxy\'s own', async () => {
    const before = a.seen.length
    const r = await curl(['-sS', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de:pw', '-A', 'Mozilla/5.0 (X11; Linux x86_64)',
      '-H', 'Accept-Language: de-DE,de;q=0.9', '-H', 'X-Requested-With: XMLHttpRequest', '-H', 'sec-ch-ua-mobile: ?0', `http://127.0.0.1:${a.port}/spelled`])
    expect(r.stdout.toString()).toBe('A got /spelled\n')
    expect(a.seen.slice(before).map(s => s.head)).toEqual([[
      'GET /spelled HTTP/1.1',
      `Host: 127.0.0.1:${a.port}`,
      'User-Agent: Mozilla/5.0 (X11; Linux x86_64)',
      'Accept: */*',
      'Accept-Language: de-DE,de;q=0.9',
      'X-Requested-With: XMLHttpRequest',
      'sec-ch-ua-mobile: ?0',
      'Connection: close'
    ].join('\r\n')])
  })

  it('forwards nothing a client pipelines after its request', async () => {
    const before = a.seen.length
    const socket = connect(consumer.httpPort, '127.0.0.1')
    const reply: Buffer[] = []
    socket.on('data', chunk => reply.push(chunk))
    const closed = new Promise(resolve => socket.on('close', resolve))
    socket.write(`GET http://127.0.0.1:${a.port}/one HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET http://localhost:${b.port}/two HTTP/1.1\r\nHost: localhost\r\nProxy-Authorization: Basic c2VjcmV0\r\n\r\n`)
    // the response says close; we do, once it is read
    await new Promise(resolve => setTimeout(resolve, 1500))
    socket.end()
    await closed
    const text = Buffer.concat(reply).toString('latin1')
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(text).toContain('\r\nConnection: close\r\n')
    expect(text).not.toMatch(/keep-alive/i)
    expect(text.endsWith('A got /one\n')).toBe(true)
    expect(a.seen.slice(before).map(s => s.head.split('\r\n')[0])).toEqual(['GET /one HTTP/1.1'])
    expect(b.seen.some(s => s.head.includes('/two'))).toBe(false)
  })

  it('passes on a response head the origin never finished, rather than drop it', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const socket = connect(consumer.httpPort, '127.0.0.1')
      const chunks: Buffer[] = []
      socket.on('data', chunk => chunks.push(chunk))
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
      socket.on('error', reject)
      socket.write(`GET http://127.0.0.1:${a.port}/cut-head HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
    })
    expect(text).toBe('HTTP/1.1 200 OK\r\nX-Cut: yes')
  })

  it('asks again (407) for a Proxy-Authorization it cannot read, rather than ignore its region', async () => {
    const before = a.seen.length
    for (const header of [`Basic ${Buffer.from('region-jp').toString('base64')}`, 'Bearer region-jp', 'Basic !!!']) {
      const r = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '-H', `Proxy-Authorization: ${header}`, `http://127.0.0.1:${a.port}/x`])
      const text = r.stdout.toString()
      expect(text, header).toMatch(/^HTTP\/1\.1 407 Proxy Authentication Required\r\n/)
      expect(text, header).toContain('Proxy-Authenticate: Basic')
      expect(text, header).toContain('must be Basic base64(user:password)')
    }
    expect(a.seen.length).toBe(before)
  })

  it('names the exit that carried a request, and the status of a refusal, in headers a program can read', async () => {
    const proxy = ['--proxy', `http://127.0.0.1:${consumer.httpPort}`]
    const plain = await curl(['-i', ...proxy, `http://127.0.0.1:${a.port}/named`])
    const text = plain.stdout.toString('latin1')
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(text).toContain(`\r\nX-Spareband-Exit: ${exit.peerId}\r\n`)
    expect(text.endsWith('A got /named\n')).toBe(true)
    // -p: a CONNECT tunnel for plain http; -i prints the proxy's answer to it before the origin's
    const tunnelled = await curl(['-i', '-p', ...proxy, `http://127.0.0.1:${a.port}/tunnelled`])
    expect(tunnelled.stdout.toString('latin1')).toMatch(new RegExp(`^HTTP/1\\.1 200 Connection Established\r\nX-Spareband-Exit: ${exit.peerId}\r\n\r\nHTTP/1\\.1 200 OK\r\n`))
    // port 9: not one the exit allows
    const refused = await curl(['-i', ...proxy, 'http://127.0.0.1:9/'])
    const r = refused.stdout.toString('latin1')
    expect(r).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/)
    expect(r).toContain('\r\nX-Spareband-Status: POLICY_DENIED\r\n')
    // and which exit refused it
    expect(r).toContain(`\r\nX-Spareband-Exit: ${exit.peerId}\r\n`)
    // no exit at all: none named
    const none = (await curl(['-i', ...proxy, '--proxy-user', 'region-fr:', `http://127.0.0.1:${a.port}/none`])).stdout.toString('latin1')
    expect(none).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/)
    expect(none).toContain('\r\nX-Spareband-Status: NO_EXIT\r\n')
    expect(none).not.toContain('X-Spareband-Exit')
  })

  it('answers its own errors with the reason phrase of their status', async () => {
    const answer = async (request: string): Promise<string> => new Promise((resolve, reject) => {
      const socket = connect(consumer.httpPort, '127.0.0.1')
      const chunks: Buffer[] = []
      socket.on('data', chunk => chunks.push(chunk))
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
      socket.on('error', reject)
      socket.write(request)
    })
    expect(await answer('GET http://127.0.0.1/ HTTP/2.0\r\n\r\n')).toMatch(/^HTTP\/1\.1 505 HTTP Version Not Supported\r\n/)
    expect(await answer(`GET http://127.0.0.1/${'a'.repeat(9000)} HTTP/1.1\r\n\r\n`)).toMatch(/^HTTP\/1\.1 414 URI Too Long\r\n/)
    expect(await answer(`GET http://127.0.0.1/ HTTP/1.1\r\nx: ${'a'.repeat(17000)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/)
  })

  it('lets a client that sends its whole body before it reads (as Python\'s http.client does) finish, and read the refusal', async () => {
    /** Writes the head and a 16 MiB body, waits until all of it is written, and only then reads the answer, as requests does. */
    const sendAllThenRead = async (target: string, user: string): Promise<string> => new Promise((resolve, reject) => {
      const body = Buffer.alloc(16 * 1024 * 1024, 0x61)
      const socket = connect(consumer.httpPort, '127.0.0.1')
      const chunks: Buffer[] = []
      socket.on('error', reject)
      socket.setTimeout(20_000, () => { socket.destroy(); reject(new Error(`${target} as ${user}: the body could not be sent in 20 s (${socket.bytesWritten} bytes written)`)) })
      socket.write(`POST ${target} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${Buffer.from(`${user}:`).toString('base64')}\r\nContent-Length: ${body.byteLength}\r\n\r\n`)
      socket.write(body, () => {
        socket.on('data', chunk => chunks.push(chunk))
        socket.on('end', () => { socket.destroy(); resolve(Buffer.concat(chunks).toString('latin1')) })
      })
    })
    const noExit = await sendAllThenRead(`http://127.0.0.1:${a.port}/upload`, 'region-fr')
    expect(noExit).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/)
    expect(noExit).toContain('\r\nX-Spareband-Status: NO_EXIT\r\n')
    expect(noExit.endsWith('\r\n\r\nspareband: NO_EXIT: no exit known in region fr\n')).toBe(true)
    // the exit's refusal: port 9 is not one it allows
    const denied = await sendAllThenRead('http://127.0.0.1:9/upload', 'region-de')
    expect(denied).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/)
    expect(denied).toContain('\r\nX-Spareband-Status: POLICY_DENIED\r\n')
    // the proxy's own refusal of a user name that names no exit
    const unknown = await sendAllThenRead(`http://127.0.0.1:${a.port}/upload`, 'region-xx')
    expect(unknown).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(unknown).toContain('\r\nX-Spareband-Status: BAD_REQUEST\r\n')
    expect(unknown.endsWith('\r\n\r\nspareband: BAD_REQUEST: unknown region "xx" in proxy user name "region-xx"\n')).toBe(true)
    expect(a.seen.some(s => s.head.includes('/upload'))).toBe(false)
  })

  it('refuses what is not a proxy request, or not HTTP, itself: 400 with X-Spareband-Status BAD_REQUEST, and no exit asked', async () => {
    const deniedBefore = (await exit.status()).exit.denied
    const ask = async (bytes: string): Promise<string> => new Promise((resolve, reject) => {
      const socket = connect(consumer.httpPort, '127.0.0.1')
      const chunks: Buffer[] = []
      socket.on('error', reject)
      socket.on('data', chunk => chunks.push(chunk))
      socket.on('end', () => { socket.destroy(); resolve(Buffer.concat(chunks).toString('latin1')) })
      socket.write(bytes)
    })
    const origin = await ask('GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n')
    expect(origin).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(origin).toContain('\r\nX-Spareband-Status: BAD_REQUEST\r\n')
    expect(origin.endsWith('\r\n\r\nspareband: BAD_REQUEST: this is a proxy: send CONNECT host:port or an absolute http:// URI\n')).toBe(true)
    const garbage = await ask('\x16\x03\x01 hello\r\n\r\n')
    expect(garbage).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(garbage).toContain('\r\nX-Spareband-Status: BAD_REQUEST\r\n')
    expect(garbage).toMatch(/\r\n\r\nspareband: BAD_REQUEST: request line [^\n]+\n$/)
    // a target host no exit would take: refused here, naming no exit (none was asked)
    const badHost = await ask('GET http://a..b:80/ HTTP/1.1\r\nHost: a..b\r\nProxy-Authorization: Basic ' + Buffer.from('region-de:').toString('base64') + '\r\n\r\n')
    expect(badHost).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(badHost).toContain('\r\nX-Spareband-Status: BAD_REQUEST\r\n')
    expect(badHost).not.toContain('X-Spareband-Exit')
    expect(badHost).toMatch(/\r\n\r\nspareband: BAD_REQUEST: target host "a\.\.b" is neither a host name \(labels of [^\n]+ nor an IP address \(no zone\)\n$/)
    const socks = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, '--proxy-user', 'region-de:x', `http://${'x'.repeat(64)}.example:80/`])
    expect(socks.code).toBe(97)
    expect(socks.stderr).toMatch(/\(1\)/)
    expect((await exit.status()).exit.denied).toBe(deniedBefore)
  })

  it('with credentials configured: a wrong password is refused, a right one with a user name that targets nothing is not allowed by ruleset', async () => {
    const guarded = await spawnNode({ region: 'fr', args: ['--no-supply', '--bootstrap', exit.addresses[0]], config: '[proxy]\nusername = "alice"\npassword = "s3cret"\n' })
    try {
      await waitForPeers(guarded, [exit.peerId])
      const url = `http://127.0.0.1:${a.port}/guarded`
      const socks = (user: string): string[] => ['--socks5-hostname', `127.0.0.1:${guarded.socksPort}`, '--proxy-user', user, url]
      const wrong = await curl(socks('alice:nope'))
      expect(wrong.code).toBe(97)
      expect(wrong.stderr).toMatch(/rejected/i)
      const untargeted = await curl(socks('alice-region-xx:s3cret'))
      expect(untargeted.code).toBe(97)
      expect(untargeted.stderr).toMatch(/\(2\)|not allowed/i)
      const ok = await curl(socks('alice-region-de:s3cret'))
      expect(ok.stdout.toString()).toBe('A got /guarded\n')
      const http = await curl(['-i', '--proxy', `http://127.0.0.1:${guarded.httpPort}`, '--proxy-user', 'alice:nope', url])
      expect(http.stdout.toString()).toMatch(/^HTTP\/1\.1 407 /)
      // said as every other refusal is, for programs that read the status header
      expect(http.stdout.toString()).toContain('\r\nX-Spareband-Status: PROXY_AUTH\r\n')
      expect(http.stdout.toString().endsWith('\r\n\r\nspareband: PROXY_AUTH: wrong proxy user name or password\n')).toBe(true)
      // the operator's log names the user name tried, over either proxy, and never the password
      await waitFor(() => (guarded.proc.output.match(/warn +proxy refused a client .*kind=credentials .*\(user name \\"alice\\"\)/g) ?? []).length === 2, { timeoutMs: 5000, what: 'both refusals in the log' })
      expect(guarded.proc.output).not.toContain('nope')
    } finally {
      await guarded.proc.kill()
    }
  })

  /** Sends `handshake` and `data` in one write and half-closes at once; resolves with all that comes back. */
  async function sendAndHalfClose (port: number, handshake: Buffer, data: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
      const chunks: Buffer[] = []
      socket.on('data', chunk => chunks.push(chunk))
      socket.on('end', () => { socket.destroy(); resolve(Buffer.concat(chunks)) })
      socket.on('error', reject)
      socket.setTimeout(15_000, () => { socket.destroy(); reject(new Error(`no end of the answer in 15 s; got ${Buffer.concat(chunks).toString('latin1')}`)) })
      socket.on('connect', () => socket.end(Buffer.concat([handshake, data])))
    })
  }

  it('carries a FIN that came with the request, before the tunnel was up (CONNECT and SOCKS5)', async () => {
    const data = Buffer.alloc(50_000, 0x7a)
    const viaConnect = await sendAndHalfClose(consumer.httpPort, Buffer.from(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\n\r\n`), data)
    expect(viaConnect.toString('latin1')).toBe(`HTTP/1.1 200 Connection Established\r\nX-Spareband-Exit: ${exit.peerId}\r\n\r\ngot 50000 bytes`)
    // greeting (no auth), then CONNECT 127.0.0.1:echoPort
    const socks = Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff])
    const viaSocks = await sendAndHalfClose(consumer.socksPort, socks, data)
    // method choice, then the 10-byte CONNECT reply, then the answer
    expect(viaSocks.subarray(0, 4)).toEqual(Buffer.from([0x05, 0x00, 0x05, 0x00]))
    expect(viaSocks.subarray(12).toString('latin1')).toBe('got 50000 bytes')
  })
})
