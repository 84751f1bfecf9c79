import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { curl, exitAndConsumer, spawnNode, waitForPeers } from '../utils/network.ts'
import { socksConnect } from '../utils/socks-client.ts'
import { waitFor } from '../utils/cli.ts'
import { connect } from 'node:net'
import { request as httpRequest } from 'node:http'
import type { Socket } from 'node:net'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

/**
 * One exit (private targets allowed, only the target's port) and one
 * consumer, as real processes; real curl through the consumer's proxies.
 */
describe('tunnels through a direct connection, with real curl', () => {
  let target: TargetServer
  let exit: SpawnedNode
  let consumer: SpawnedNode

  beforeAll(async () => {
    target = await startTargetServer()
    ;({ exit, consumer } = await exitAndConsumer([target.port]))
  })
  afterAll(async () => {
    await Promise.all([exit?.proc.kill(), consumer?.proc.kill()])
    await target?.close()
  })

  it('64 MB through SOCKS5 arrives with the same SHA-256; the name is resolved at the exit', async () => {
    const r = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, `http://localhost:${target.port}/blob`])
    expect(r.stderr).toBe('')
    expect(r.stdout.byteLength).toBe(target.blob.byteLength)
    expect(sha256(r.stdout)).toBe(target.blobSha256)
    const s = await exit.status()
    expect(s.exit.bytesOut).toBeGreaterThanOrEqual(target.blob.byteLength)
    expect(s.exit.tunnelsTotal).toBeGreaterThanOrEqual(1)
  })

  it('64 MB through the HTTP proxy (absolute URI) and through CONNECT', async () => {
    const plain = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.1:${target.port}/blob`])
    expect(plain.code).toBe(0)
    expect(sha256(plain.stdout)).toBe(target.blobSha256)
    const tunnelled = await curl(['--proxytunnel', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.1:${target.port}/blob`])
    expect(tunnelled.code).toBe(0)
    expect(sha256(tunnelled.stdout)).toBe(target.blobSha256)
  })

  it('uploads arrive intact (16 MB POST through SOCKS5)', async () => {
    const body = target.blob.subarray(0, 16 * 1024 * 1024)
    const { writeFile } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const file = `${tmpdir()}/sb-upload-${process.pid}.bin`
    await writeFile(file, body)
    const r = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, '--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream', `http://127.0.0.1:${target.port}/upload`])
    expect(r.code).toBe(0)
    const res = JSON.parse(r.stdout.toString())
    expect(res.bytes).toBe(body.byteLength)
    expect(res.sha256).toBe(sha256(body))
  })

  it('ends a connection that floods its protocol negotiation, says so in its log, and carries tunnels on', async () => {
    const port = Number(/^\/ip4\/127\.0\.0\.1\/tcp\/(\d+)/.exec(exit.addresses.find((a: string) => a.startsWith('/ip4/127.0.0.1/tcp/'))!)![1])
    // multistream-select's header, then length-prefix bytes that all say "more follows", with no handshake
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.write(Buffer.concat([Buffer.from([19]), Buffer.from('/multistream/1.0.0\n'), Buffer.alloc(65536, 0xff)]))
    await new Promise(resolve => socket.once('close', resolve))
    const ended = (): string[] => exit.proc.output.split('\n').filter(l => / warn +ended a peer's connection or stream /.test(l))
    await waitFor(() => ended().length >= 1, { timeoutMs: 5000, what: 'the line in the exit\'s log' })
    expect(ended()[0]).toMatch(/peer=\/ip4\/127\.0\.0\.1\/tcp\/\d+ /)
    expect(ended()[0]).toContain('ended=connection')
    expect(ended()[0]).toContain('length prefix longer than 2 bytes in protocol negotiation')
    const r = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, `http://127.0.0.1:${target.port}/slice/100000`])
    expect(sha256(r.stdout)).toBe(sha256(target.blob.subarray(0, 100000)))
  })

  it('logs the bootstrap peer it connected to while starting', () => {
    const lines = consumer.proc.output.split('\n')
    const connected = lines.findIndex(l => / info +peer connected peer=/.test(l) && l.includes(exit.peerId))
    expect(connected).toBeGreaterThanOrEqual(0)
  })

  it('targets by user name: region-de reaches the de exit, region-fr has no exit', async () => {
    const ok = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, '--proxy-user', 'region-de-session-abc:x', `http://127.0.0.1:${target.port}/hello`])
    expect(ok.stdout.toString()).toBe('hello from the target\n')
    const none = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-fr:', `http://127.0.0.1:${target.port}/hello`])
    expect(none.stdout.toString()).toMatch(/^HTTP\/1\.1 503/)
    expect(none.stdout.toString()).toContain('no exit known in region fr')
    // no exit is this node's problem, not the target's: a warning in its log
    await waitFor(() => consumer.proc.output.includes(`warn  tunnel not carried status=NO_EXIT target=127.0.0.1:${target.port} reason="no exit known in region fr"`), { timeoutMs: 5000, what: 'NO_EXIT in the consumer\'s log' })
    // region-uk is the United Kingdom (gb), looked for like any region, not an unknown one
    const uk = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-uk:', `http://127.0.0.1:${target.port}/hello`])
    expect(uk.stdout.toString()).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/)
    expect(uk.stdout.toString().endsWith('\r\n\r\nspareband: NO_EXIT: no exit known in region gb\n')).toBe(true)
    const bad = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-xx:', `http://127.0.0.1:${target.port}/hello`])
    expect(bad.stdout.toString()).toMatch(/^HTTP\/1\.1 400/)
    expect(bad.stdout.toString()).toContain('unknown region "xx"')
    // over SOCKS5 the same user name is "not allowed by ruleset" on the CONNECT, not a refused password
    const badSocks = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, '--proxy-user', 'region-xx:x', `http://127.0.0.1:${target.port}/hello`])
    expect(badSocks.code).toBe(97)
    expect(badSocks.stderr).toMatch(/\(2\)|not allowed/i)
    expect(badSocks.stderr).not.toMatch(/rejected/i)
  })

  it('shows the operator why a client was refused for its user name, at most 10 lines a minute however many come', async () => {
    const shown = (): string[] => consumer.proc.output.split('\n').filter(l => / warn +proxy refused a client /.test(l))
    // a scraper with a typo in its region, at full speed
    const replies = await Promise.all(Array.from({ length: 30 }, async () => {
      const r = await socksConnect(consumer.socksPort, '127.0.0.1', target.port, { user: 'region-xx-session-s1', password: 'x' })
      r.socket.destroy()
      return r.reply
    }))
    expect(new Set(replies)).toEqual(new Set([2]))
    const http = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-xx:', `http://127.0.0.1:${target.port}/hello`])
    expect(http.stdout.toString()).toMatch(/^HTTP\/1\.1 400/)
    await waitFor(() => shown().length >= 10, { timeoutMs: 5000, what: 'the refusals in the log' })
    const lines = shown()
    // with the two of the test before, 33 refusals within a minute: 10 lines
    expect(lines.length).toBe(10)
    expect(lines.at(-1)).toContain('proxy=socks5 kind=targeting')
    expect(lines.at(-1)).toContain('unknown region \\"xx\\"')
  })

  it('maps exit statuses to SOCKS replies and HTTP codes', async () => {
    const before = target.connections
    // a port the exit does not allow: POLICY_DENIED -> SOCKS 0x02, HTTP 403
    const denied = await socksConnect(consumer.socksPort, '127.0.0.1', 22)
    expect(denied.reply).toBe(2)
    denied.socket.destroy()
    const http403 = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, 'http://127.0.0.1:22/'])
    expect(http403.stdout.toString()).toMatch(/^HTTP\/1\.1 403/)
    expect(http403.stdout.toString()).toContain('POLICY_DENIED')
    expect(target.connections).toBe(before)
    // and the exit's operator sees whom it refused and why (the log had no line for a refused tunnel)
    const refusedLines = (): string[] => exit.proc.output.split('\n').filter(l => / info +exit refused a tunnel /.test(l) && l.includes('status=POLICY_DENIED'))
    await waitFor(() => refusedLines().length >= 2, { timeoutMs: 5000, what: 'the refusals in the exit\'s log' })
    expect(refusedLines()[0]).toContain(`peer=${consumer.peerId}`)
    expect(refusedLines()[0]).toMatch(/reason=.*22/)
    // and the consumer's operator, as the target's answer (info), not the exit refusing this node (warn)
    const failedLines = (): string[] => consumer.proc.output.split('\n').filter(l => / info +tunnel not carried status=POLICY_DENIED /.test(l))
    await waitFor(() => failedLines().length >= 2, { timeoutMs: 5000, what: 'the failures in the consumer\'s log' })
    expect(failedLines()[0]).toContain(`target=127.0.0.1:22 exit=${exit.peerId}`)
  })

  it('a connection refused at the target -> SOCKS 0x05, HTTP 502', async () => {
    // the exit only allows the target's port; stop nothing, use a closed port by asking the exit's own allowed port on another loopback address
    const refused = await socksConnect(consumer.socksPort, '127.0.0.9', target.port)
    expect(refused.reply).toBe(5)
    refused.socket.destroy()
    const http = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.9:${target.port}/`])
    expect(http.stdout.toString()).toMatch(/^HTTP\/1\.1 502/)
    expect(http.stdout.toString()).toContain('CONNECT_REFUSED')
  })

  it('half-close propagates: the client shuts its side and still reads the answer', async () => {
    const { socket, reply } = await socksConnect(consumer.socksPort, '127.0.0.1', target.port)
    expect(reply).toBe(0)
    const chunks: Buffer[] = []
    socket.on('data', d => chunks.push(d))
    const closed = new Promise(resolve => socket.on('close', resolve))
    socket.end('GET /hello HTTP/1.0\r\nHost: x\r\n\r\n')
    await closed
    const text = Buffer.concat(chunks).toString()
    expect(text).toMatch(/^HTTP\/1\.1 200 OK/)
    expect(text.endsWith('hello from the target\n')).toBe(true)
  })

  it('a burst of 300 requests at once through one exit: every one gets its bytes, none a 429, and nothing stays open', async () => {
    // 300 x 200 kB passes the 4 MiB an exit carries unsigned faster than receipts
    // come back: the exit answers RATE_LIMITED for a moment, and the consumer asks again
    const n = 300
    const size = 200_000
    const expected = sha256(target.blob.subarray(0, size))
    const get = async (i: number): Promise<string> => new Promise((resolve, reject) => {
      const socket = i % 2 === 0 ? connect(consumer.httpPort, '127.0.0.1') : undefined
      const chunks: Buffer[] = []
      const done = (s: Socket): void => {
        s.on('data', d => chunks.push(d))
        s.on('error', reject)
        s.on('close', () => {
          const text = Buffer.concat(chunks)
          const head = text.subarray(0, text.indexOf('\r\n\r\n')).toString('latin1')
          if (!/^HTTP\/1\.[01] 200 /.test(head)) { reject(new Error(text.toString('latin1').slice(0, 300))); return }
          resolve(sha256(text.subarray(head.length + 4)))
        })
      }
      if (socket != null) {
        done(socket)
        socket.write(`GET http://127.0.0.1:${target.port}/slice/${size} HTTP/1.1\r\nHost: x\r\n\r\n`)
      } else {
        socksConnect(consumer.socksPort, '127.0.0.1', target.port).then(({ socket, reply }) => {
          if (reply !== 0) { reject(new Error(`SOCKS reply ${reply}`)); return }
          done(socket)
          socket.write(`GET /slice/${size} HTTP/1.0\r\nHost: x\r\n\r\n`)
        }, reject)
      }
    })
    const results = await Promise.allSettled(Array.from({ length: n }, async (_, i) => get(i)))
    const failures = results.flatMap(r => r.status === 'rejected' ? [String(r.reason)] : [])
    expect(failures.slice(0, 3)).toEqual([])
    expect(results.filter(r => r.status === 'fulfilled' && r.value === expected).length).toBe(n)
    await waitFor(async () => (await consumer.status()).proxy.tunnelsOpen === 0 && (await exit.status()).exit.tunnelsOpen === 0, { timeoutMs: 10_000, what: 'every tunnel closed' })
  })

  it('status shows proxy and exit counters', async () => {
    const c = await consumer.status()
    expect(c.proxy.socksPort).toBe(consumer.socksPort)
    expect(c.proxy.bytesIn).toBeGreaterThanOrEqual(3 * target.blob.byteLength)
    expect(c.proxy.tunnelsOpen).toBe(0)
    expect(c.exit.enabled).toBe(false)
    const e = await exit.status()
    expect(e.exit.bytesIn).toBeGreaterThanOrEqual(16 * 1024 * 1024)
    expect(e.exit.denied).toBeGreaterThanOrEqual(2)
    expect(e.exit.tunnelsOpen).toBe(0)
    expect(e.warnings.join(' ')).toContain('allow_private_targets is ON')
  })
})

/**
 * A scraper's steady load through one exit: many workers, each fetching
 * pages back to back. The exit is free (price 0) so the consumer's
 * allowance is no limit here; its receipts still go as usual.
 */
describe('steady load through one exit, with node:http clients', () => {
  let target: TargetServer
  let exit: SpawnedNode
  let consumer: SpawnedNode

  beforeAll(async () => {
    target = await startTargetServer(4 * 1024 * 1024)
    exit = await spawnNode({ region: 'de', args: ['--allow-private-targets', '--exit-ports', String(target.port)], config: '[exit]\nprice_per_gb = 0\n' })
    consumer = await spawnNode({ region: 'jp', args: ['--no-supply', '--bootstrap', exit.addresses[0]] })
    await waitForPeers(consumer, [exit.peerId])
  })
  afterAll(async () => {
    await Promise.all([exit?.proc.kill(), consumer?.proc.kill()])
    await target?.close()
  })

  it('60 workers fetching 2 MB pages back to back for 10 s: no 429, every page intact', async () => {
    const size = 2_000_000
    const expected = sha256(target.blob.subarray(0, size))
    const fetchPage = async (): Promise<string> => new Promise(resolve => {
      const req = httpRequest({ host: '127.0.0.1', port: consumer.httpPort, path: `http://127.0.0.1:${target.port}/slice/${size}`, agent: false, headers: { 'Proxy-Authorization': `Basic ${Buffer.from('region-de:').toString('base64')}` } }, res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const body = Buffer.concat(chunks)
          resolve(res.statusCode === 200 ? (sha256(body) === expected ? 'intact' : `200 with ${body.byteLength} other bytes`) : `${res.statusCode} ${body.toString().trim()}`)
        })
        res.on('error', err => resolve(`response ${err.message}`))
      })
      req.on('error', err => resolve(`request ${err.message}`))
      req.end()
    })
    const outcomes = new Map<string, number>()
    const until = Date.now() + 10_000
    await Promise.all(Array.from({ length: 60 }, async () => {
      while (Date.now() < until) {
        const outcome = (await fetchPage()).replace(/\d{5,}/g, 'N')
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
      }
    }))
    expect([...outcomes.keys()]).toEqual(['intact'])
    expect(outcomes.get('intact')).toBeGreaterThanOrEqual(60)
    await waitFor(async () => (await consumer.status()).proxy.tunnelsOpen === 0 && (await exit.status()).exit.tunnelsOpen === 0, { timeoutMs: 10_000, what: 'every tunnel closed' })
  })
})
