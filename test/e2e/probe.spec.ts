import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer as createHttpsServer } from 'node:https'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { exitAndConsumer } from '../utils/network.ts'
import { runCli } from '../utils/cli.ts'
import type { Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

const FIXTURES = join(import.meta.dirname, '../fixtures/tls')

/** `spareband probe` against a running consumer, through a real exit, with real HTTP and TLS origins on loopback. */
describe('spareband probe --region R URL', () => {
  let target: TargetServer
  let tlsOrigin: Server
  let tlsPort: number
  let tlsRequests = 0
  /** The same origin and certificate on 127.0.0.2, an address the certificate does not name. */
  let otherOrigin: Server
  let otherPort: number
  let exit: SpawnedNode
  let consumer: SpawnedNode

  beforeAll(async () => {
    target = await startTargetServer(64 * 1024)
    // a self-signed certificate for localhost and 127.0.0.1, good for a century (test/fixtures/tls)
    const [key, cert] = await Promise.all([readFile(join(FIXTURES, 'key.pem')), readFile(join(FIXTURES, 'cert.pem'))])
    tlsOrigin = createHttpsServer({ key, cert }, (req, res) => {
      tlsRequests++
      res.writeHead(200, { server: 'tls-origin', 'content-type': 'text/plain' })
      res.end(`secure hello for ${req.url}\n`)
    })
    await new Promise<void>(resolve => tlsOrigin.listen(0, '127.0.0.1', resolve))
    tlsPort = (tlsOrigin.address() as AddressInfo).port
    otherOrigin = createHttpsServer({ key, cert }, (_req, res) => { tlsRequests++; res.end('other\n') })
    await new Promise<void>(resolve => otherOrigin.listen(0, '127.0.0.2', resolve))
    otherPort = (otherOrigin.address() as AddressInfo).port
    ;({ exit, consumer } = await exitAndConsumer([target.port, tlsPort, otherPort]))
  })
  afterAll(async () => {
    await Promise.all([exit, consumer].map(async n => n?.proc.kill()))
    await target?.close()
    tlsOrigin?.close()
    otherOrigin?.close()
  })

  const probe = async (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> =>
    runCli(['probe', ...args, '--data-dir', consumer.dataDir], { timeoutMs: 60_000 })

  it('fetches a URL through an exit of the region, with the body\'s hash and phase timings', async () => {
    const r = await probe(['--region', 'de', '--json', `http://127.0.0.1:${target.port}/slice/40000`])
    expect(r.code).toBe(0)
    const result = JSON.parse(r.stdout)
    expect(result.ok).toBe(true)
    expect(result.exit).toBe(exit.peerId)
    expect(result.region).toBe('de')
    expect(result.status).toBe(200)
    expect(result.bytes).toBe(40000)
    expect(result.sha256).toBe(sha256(target.blob.subarray(0, 40000)))
    expect(result.headers['content-length']).toBe('40000')
    const t = result.timings
    expect(t.tunnelMs).toBeGreaterThan(0)
    expect(t.firstByteMs).toBeGreaterThanOrEqual(t.tunnelMs)
    expect(t.totalMs).toBeGreaterThanOrEqual(t.firstByteMs)
    expect(t.tlsMs).toBeUndefined()
    expect(target.requests).toContain('GET /slice/40000')
    // the bytes went through the consumer's proxy part and the exit, not straight to the target
    expect((await consumer.status()).proxy.bytesIn).toBeGreaterThanOrEqual(40000)
    const carried = (await exit.status()).exit
    expect(carried.bytesIn + carried.bytesOut).toBeGreaterThanOrEqual(40000)
  })

  it('runs TLS end to end over the tunnel, and checks the certificate unless told not to', async () => {
    const insecure = await probe(['--region', 'de', '--insecure', '--json', `https://127.0.0.1:${tlsPort}/page?x=1`])
    expect(insecure.code).toBe(0)
    const ok = JSON.parse(insecure.stdout)
    expect(ok.status).toBe(200)
    expect(ok.sha256).toBe(sha256(Buffer.from('secure hello for /page?x=1\n')))
    expect(ok.tls.protocol).toMatch(/^TLSv1\.[23]$/)
    expect(ok.tls.authorized).toBe(false)
    expect(ok.tls.authorizationError).toMatch(/SELF_SIGNED/)
    expect(ok.timings.tlsMs).toBeGreaterThanOrEqual(ok.timings.tunnelMs)
    expect(ok.timings.firstByteMs).toBeGreaterThanOrEqual(ok.timings.tlsMs)
    expect(ok.headers.server).toBe('tls-origin')

    const before = tlsRequests
    const strict = await probe(['--region', 'de', `https://127.0.0.1:${tlsPort}/`])
    expect(strict.code).toBe(1)
    expect(strict.stdout).toMatch(/failed\s+TLS: self[- ]signed certificate/i)
    // the handshake failed: no request reached the origin
    expect(tlsRequests).toBe(before)
  })

  it('--ca trusts a testnet\'s own CA, and the certificate must still name the URL\'s host', async () => {
    const ca = join(FIXTURES, 'cert.pem')
    const trusted = await probe(['--region', 'de', '--ca', ca, '--json', `https://127.0.0.1:${tlsPort}/ca`])
    expect(trusted.code).toBe(0)
    const t = JSON.parse(trusted.stdout)
    expect(t.tls.authorized).toBe(true)
    expect(t.sha256).toBe(sha256(Buffer.from('secure hello for /ca\n')))
    // the certificate names localhost and 127.0.0.1, not 127.0.0.2 (checked against "localhost" it would pass)
    const before = tlsRequests
    const wrongHost = await probe(['--region', 'de', '--ca', ca, '--json', `https://127.0.0.2:${otherPort}/`])
    expect(wrongHost.code).toBe(1)
    const w = JSON.parse(wrongHost.stdout)
    expect(w.failure).toBe('TLS')
    expect(w.error).toMatch(/127\.0\.0\.2 is not in the cert's list/)
    expect(tlsRequests).toBe(before)
    const missing = await probe(['--ca', '/nonexistent/ca.pem', `https://127.0.0.1:${tlsPort}/`])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/--ca \/nonexistent\/ca.pem: cannot read it: no such file \(ENOENT\)$/m)
    const notPem = await probe(['--ca', join(FIXTURES, 'key.pem'), `https://127.0.0.1:${tlsPort}/`])
    expect(notPem.code).toBe(2)
    expect(notPem.stderr).toMatch(/no PEM certificate in it/)
  })

  it('says why a probe failed, and exits 1: the exit\'s refusal, no exit in the region', async () => {
    const connections = target.connections
    const denied = await probe(['--region', 'de', '--json', 'http://127.0.0.1:9/'])
    expect(denied.code).toBe(1)
    const d = JSON.parse(denied.stdout)
    // the refusing exit is named, by its peer id, as README says
    expect(d).toMatchObject({ ok: false, failure: 'POLICY_DENIED', exit: exit.peerId })
    expect(d.error).toMatch(/port 9/)
    const deniedText = await probe(['--region', 'de', 'http://127.0.0.1:9/'])
    expect(deniedText.code).toBe(1)
    expect(deniedText.stdout).toMatch(new RegExp(`^exit\\s+${exit.peerId}$`, 'm'))
    const none = await probe(['--region', 'jp', `http://127.0.0.1:${target.port}/`])
    expect(none.code).toBe(1)
    expect(none.stdout).toMatch(/failed\s+NO_EXIT: no exit known in region jp/)
    expect(none.stdout).toMatch(/^exit\s+-$/m)
    expect(target.connections).toBe(connections)
  })

  it('--count N probes N times and gives the spread of each phase, counting failures by cause', async () => {
    const before = target.requests.length
    const r = await probe(['--region', 'de', '--count', '5', '--json', `http://127.0.0.1:${target.port}/slice/1000`])
    expect(r.code).toBe(0)
    const s = JSON.parse(r.stdout)
    expect(s).toMatchObject({ count: 5, succeeded: 5, failures: {}, exits: { [exit.peerId]: 5 } })
    expect(target.requests.length - before).toBe(5)
    expect(new Set(s.results.map((x: any) => x.sha256))).toEqual(new Set([sha256(target.blob.subarray(0, 1000))]))
    const firstBytes = s.results.map((x: any) => x.timings.firstByteMs).sort((a: number, b: number) => a - b)
    expect(s.timings.firstByteMs).toEqual({ min: firstBytes[0], p50: firstBytes[2], p90: firstBytes[4], p99: firstBytes[4], max: firstBytes[4] })
    expect(s.timings.tlsMs).toBeUndefined()

    const text = await probe(['--region', 'de', '--count', '3', 'http://127.0.0.1:9/'])
    expect(text.code).toBe(1)
    expect(text.stdout.match(/^#\d  failed  POLICY_DENIED: /gm)).toHaveLength(3)
    expect(text.stdout).toMatch(/^succeeded\s+0$/m)
    expect(text.stdout).toMatch(/^failures\.POLICY_DENIED\s+3$/m)
    // each refusal names its exit, and the exits used count the refusing one
    expect(text.stdout.match(new RegExp(`^#\\d  failed  POLICY_DENIED: .*  via ${exit.peerId}$`, 'gm'))).toHaveLength(3)
    expect(text.stdout).toMatch(new RegExp(`^exits\\.${exit.peerId}\\s+3$`, 'm'))
    const bad = await probe(['--count', '0', 'http://127.0.0.1/'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/"0" is not a whole number of probes/)
  })

  it('refuses bad input before asking the node, with a usage error', async () => {
    const ftp = await probe(['ftp://127.0.0.1/file'])
    expect(ftp.code).toBe(2)
    expect(ftp.stderr).toMatch(/ftp: a probe fetches http:\/\/ or https:\/\/ URLs/)
    const notUrl = await probe(['example.org'])
    expect(notUrl.code).toBe(2)
    expect(notUrl.stderr).toMatch(/"example.org" is not a URL/)
    const timeout = await probe(['--timeout', '0', 'http://127.0.0.1/'])
    expect(timeout.code).toBe(2)
    expect(timeout.stderr).toMatch(/"0" is not a positive number of seconds/)
    // past a timer's range: a TimeoutOverflowWarning and "the node did not answer" at once (3000000), or
    // 'The value of "delay" is out of range' (5000000)
    for (const s of ['3000000', '5000000', '3600.5']) {
      const long = await probe(['--timeout', s, 'http://127.0.0.1/'])
      expect(long.code, s).toBe(2)
      expect(long.stderr).toBe(`spareband: flag --timeout: "${s}" is not a positive number of seconds up to 3600\n`)
    }
    // the proxy's rule for session ids, checked here: it was the node's "/v1/probe: 400 session must be ...", exit 1
    const session = await probe(['--session', 'bad id!', 'http://127.0.0.1/'])
    expect(session.code).toBe(2)
    expect(session.stderr).toBe('spareband: flag --session: "bad id!" is not a session id: 1 to 64 letters, digits, \'_\', \'.\' or \'-\'\n')
    expect((await probe(['--session', 'x'.repeat(65), 'http://127.0.0.1/'])).code).toBe(2)
    const region = await probe(['--region', 'nowhere!', 'http://127.0.0.1/'])
    expect(region.code).toBe(2)
    expect(region.stderr).toMatch(/"nowhere!" is not a region/)
  })
})
