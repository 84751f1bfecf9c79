import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { curl, spawnNode, waitForPeers } from '../utils/network.ts'
import { socksConnect } from '../utils/socks-client.ts'
import type { SocksResult } from '../utils/socks-client.ts'
import { callApi } from '../../src/cli/api-client.ts'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli, runCliJson, tempDir, waitFor } from '../utils/cli.ts'
import type { CurlResult, SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

/**
 * One consumer, one exit per operator control, each in its own region so
 * the proxy user name picks the exit under test.
 */
describe('exit operator controls take effect', () => {
  let target: TargetServer
  let consumer: SpawnedNode
  let second: SpawnedNode
  const exits: Record<string, SpawnedNode> = {}
  const nodes = (): SpawnedNode[] => [consumer, second, ...Object.values(exits)].filter(n => n != null)

  beforeAll(async () => {
    target = await startTargetServer(8 * 1024 * 1024)
    const port = String(target.port)
    const common = (extra: string): string => `[exit]\nallow_private_targets = true\nallowed_ports = [${port}]\n${extra}`
    const [fr, jp, us, gb, it, es, nl, pl] = await Promise.all([
      // 16 Mbit/s = 2 MB/s download and upload caps
      spawnNode({ region: 'fr', config: common('download_mbps = 16\nupload_mbps = 16\n') }),
      // a daily quota of 1 MB
      spawnNode({ region: 'jp', config: common('daily_quota_gb = 0.001\n') }),
      spawnNode({ region: 'us', config: common('schedule = "never"\n') }),
      // the default address policy (no private targets), the target's port allowed
      spawnNode({ region: 'gb', args: ['--exit-ports', port] }),
      spawnNode({ region: 'it', config: common('') }),
      // asks for more credit than a newcomer's allowance
      spawnNode({ region: 'es', config: common('[accounting]\ncredit_limit = 5\n') }),
      // 32 Mbit/s = 4 MB/s for each consumer
      spawnNode({ region: 'nl', config: common('per_consumer_mbps = 32\n') }),
      spawnNode({ region: 'pl', config: common('max_tunnels = 3\nmax_tunnels_per_consumer = 2\n') })
    ])
    Object.assign(exits, { fr, jp, us, gb, it, es, nl, pl })
    consumer = await spawnNode({ region: 'ch', args: ['--no-supply', '--bootstrap', fr.addresses[0], '--bootstrap', jp.addresses[0], '--bootstrap', us.addresses[0], '--bootstrap', gb.addresses[0], '--bootstrap', it.addresses[0], '--bootstrap', es.addresses[0], '--bootstrap', nl.addresses[0], '--bootstrap', pl.addresses[0]] })
    // a second consumer, for the limits that are per consumer
    second = await spawnNode({ region: 'se', args: ['--no-supply', '--bootstrap', nl.addresses[0], '--bootstrap', pl.addresses[0]] })
    await waitForPeers(consumer, [fr.peerId, jp.peerId, us.peerId, gb.peerId, it.peerId, es.peerId, nl.peerId, pl.peerId])
    await waitForPeers(second, [nl.peerId, pl.peerId])
  })
  afterAll(async () => {
    await Promise.all(nodes().map(async n => n.proc.kill()))
    await target?.close()
  })

  const via = (region: string): string[] => ['--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', `region-${region}:`]

  it('download rate cap: 8 MB at 2 MB/s takes about 4 s, and arrives intact', async () => {
    // a first small request sets up the session, so the timing below is the cap's alone
    await curl([...via('fr'), `http://127.0.0.1:${target.port}/hello`])
    const r = await curl([...via('fr'), `http://127.0.0.1:${target.port}/blob`])
    expect(r.code).toBe(0)
    expect(sha256(r.stdout)).toBe(target.blobSha256)
    // 8 MiB at 2,000,000 B/s is 4.2 s; the bucket's burst lets ~200 KB through at once
    expect(r.ms).toBeGreaterThan(3500)
    expect(r.ms).toBeLessThan(8000)
    // the same through an uncapped exit is far faster
    const fast = await curl([...via('it'), `http://127.0.0.1:${target.port}/blob`])
    expect(sha256(fast.stdout)).toBe(target.blobSha256)
    expect(fast.ms).toBeLessThan(r.ms / 2)
  })

  it('upload rate cap: 8 MB up at 2 MB/s takes about 4 s, and reaches the target intact', async () => {
    const file = join(await tempDir('sb-upload-'), 'up.bin')
    await writeFile(file, target.blob)
    const post = (region: string): Promise<CurlResult> => curl([...via(region), '--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream', `http://127.0.0.1:${target.port}/upload`])
    const r = await post('fr')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout.toString())).toEqual({ bytes: target.blob.byteLength, sha256: target.blobSha256 })
    expect(r.ms).toBeGreaterThan(3500)
    expect(r.ms).toBeLessThan(8000)
    const fast = await post('it')
    expect(JSON.parse(fast.stdout.toString()).sha256).toBe(target.blobSha256)
    expect(fast.ms).toBeLessThan(r.ms / 2)
  })

  it('per-consumer rate cap: one consumer\'s tunnels share it, another consumer has its own', async () => {
    const get = (node: SpawnedNode): Promise<CurlResult> => curl(['--proxy', `http://127.0.0.1:${node.httpPort}`, '--proxy-user', 'region-nl:', `http://127.0.0.1:${target.port}/blob`])
    await Promise.all([curl([...via('nl'), `http://127.0.0.1:${target.port}/hello`]), get(second)])
    // two downloads of 8 MiB by one consumer share its 4 MB/s (16.8 MB: 4.2 s), while the
    // other consumer's one download has 4 MB/s of its own (2.1 s)
    const [a, b, c] = await Promise.all([get(consumer), get(consumer), get(second)])
    for (const r of [a, b, c]) expect(sha256(r.stdout)).toBe(target.blobSha256)
    expect(Math.max(a.ms, b.ms)).toBeGreaterThan(3500)
    expect(c.ms).toBeLessThan(Math.max(a.ms, b.ms) * 0.75)
    expect(c.ms).toBeGreaterThan(1500)
  })

  it('tunnel limits: past its own, a consumer gets RATE_LIMITED (429); past the exit\'s, anyone gets BUSY (503); a closed tunnel frees its slot', async () => {
    const hold = async (node: SpawnedNode): Promise<SocksResult> => {
      const r = await socksConnect(node.socksPort, '127.0.0.1', target.port, { user: 'region-pl', password: 'x' })
      expect(r.reply).toBe(0)
      return r
    }
    const get = (node: SpawnedNode): Promise<CurlResult> => curl(['-i', '--proxy', `http://127.0.0.1:${node.httpPort}`, '--proxy-user', 'region-pl:', `http://127.0.0.1:${target.port}/hello`])
    const held = [await hold(consumer), await hold(consumer)]
    try {
      // the consumer asks again for a few seconds (a slot may free up), then gives the exit's answer
      const mine = await get(consumer)
      expect(mine.stdout.toString()).toMatch(/^HTTP\/1\.1 429/)
      expect(mine.stdout.toString()).toContain('RATE_LIMITED')
      held.push(await hold(second))
      const full = await get(second)
      expect(full.stdout.toString()).toMatch(/^HTTP\/1\.1 503/)
      expect(full.stdout.toString()).toContain('BUSY')
      held.shift()!.socket.destroy()
      const ok = await waitFor(async () => {
        const r = await get(consumer)
        return r.stdout.toString().endsWith('hello from the target\n') ? r : undefined
      }, { what: 'a freed slot', timeoutMs: 15_000 })
      expect(ok?.stdout.toString()).toMatch(/^HTTP\/1\.1 200/)
      const s = await exits.pl.status()
      expect(s.exit.deniedByStatus.RATE_LIMITED).toBeGreaterThanOrEqual(1)
      expect(s.exit.deniedByStatus.BUSY).toBeGreaterThanOrEqual(1)
    } finally {
      for (const h of held) h.socket.destroy()
    }
  })

  it('daily quota: transfers stop at the quota, then new tunnels get QUOTA_EXCEEDED (HTTP 503, SOCKS 0x01)', async () => {
    // 8 MB against a 1 MB quota: the exit cuts the tunnel once the quota is used up
    const cut = await curl([...via('jp'), `http://127.0.0.1:${target.port}/blob`])
    expect(cut.code).not.toBe(0)
    expect(cut.stdout.byteLength).toBeLessThan(target.blob.byteLength)
    // the exit's log says why at the cut, not at its next reading of the warnings (every 10 s)
    await waitFor(() => /warn\s+the exit's daily data quota is used up/.test(exits.jp.proc.output), { timeoutMs: 3_000, intervalMs: 50, what: 'the quota warning in the exit\'s log' })
    const next = await curl(['-i', ...via('jp'), `http://127.0.0.1:${target.port}/hello`])
    expect(next.stdout.toString()).toMatch(/^HTTP\/1\.1 503/)
    expect(next.stdout.toString()).toContain('QUOTA_EXCEEDED')
    const socks = await socksConnect(consumer.socksPort, '127.0.0.1', target.port, { user: 'region-jp', password: 'x' })
    expect(socks.reply).toBe(1)
    socks.socket.destroy()
    const s = await exits.jp.status()
    expect(s.exit.quota.dayBytes).toBeGreaterThanOrEqual(1e6)
    expect(s.exit.deniedByStatus.QUOTA_EXCEEDED).toBeGreaterThanOrEqual(2)
    // the operator is told (status, and so the start log) why it takes nothing
    expect(s.warnings).toContainEqual(expect.stringMatching(/^the exit's daily data quota is used up: [\d.]+ MB of 1 MB carried; it takes no new tunnels \(QUOTA_EXCEEDED\) until the day turns \(exit\.daily_quota_gb\)$/))
  })

  it('the quota survives a restart of the exit', async () => {
    const old = exits.jp
    expect((await old.proc.stop('SIGTERM')).code).toBe(0)
    const { NodeProcess } = await import('../utils/cli.ts')
    const { LOOPBACK } = await import('../utils/network.ts')
    const again = new NodeProcess(old.dataDir, [...LOOPBACK, '--listen', '/ip4/127.0.0.1/tcp/0'])
    await again.ready()
    const s = await again.status()
    expect(s.exit.quota.dayBytes).toBeGreaterThanOrEqual(1e6)
    expect(s.exit.quota.dailyLimit).toBe(1e6)
    // and its log says so from the start
    expect(again.output).toMatch(/warn\s+the exit's daily data quota is used up/)
    await again.kill()
  })

  it('share schedule: outside it, new tunnels get OUTSIDE_SCHEDULE', async () => {
    const r = await curl(['-i', ...via('us'), `http://127.0.0.1:${target.port}/hello`])
    expect(r.stdout.toString()).toMatch(/^HTTP\/1\.1 503/)
    expect(r.stdout.toString()).toContain('OUTSIDE_SCHEDULE')
    const s = await exits.us.status()
    expect(s.exit.withinSchedule).toBe(false)
    expect(s.exit.schedule).toBe('never')
    expect(s.warnings).toContain('the exit is outside its share schedule: it takes no new tunnels (OUTSIDE_SCHEDULE), and ended the open ones, while exit.schedule = "never" (local time) keeps it closed')
    // a consumer's providers table says the exit is closed, not a bare load of 1.00, and what that means
    const [row] = await runCliJson(['providers', '--region', 'us', '--json', '--data-dir', consumer.dataDir])
    expect(row).toMatchObject({ peerId: s.peerId, load: 1 })
    const table = (await runCli(['providers', '--region', 'us', '--data-dir', consumer.dataDir])).stdout
    const cells = table.split('\n')[1].trim().split(/\s{2,}/)
    expect(cells[0]).toBe(s.peerId)
    expect(cells[4]).toBe('closed')
    expect(table).toContain('LOAD closed: the exit\'s ad says it takes no new tunnels now (at its tunnel limit, paused, outside its share schedule or out of data quota), so it scores low\n')
  })

  it('default address policy: every loopback spelling is refused with SOCKS 0x02 and the target sees nothing', async () => {
    const before = target.connections
    const forms = ['127.0.0.1', 'localhost', '127.1', '127.0.1', '0x7f.0.0.1', '0x7f000001', '0177.0.0.1', '017700000001', '2130706433',
      '::1', '[::1]', '::ffff:127.0.0.1', '::ffff:7f00:1', '0.0.0.0', '0', '127.0.0.2', 'LOCALHOST', 'localhost.', 'foo.localhost']
    for (const host of forms) {
      const r = await socksConnect(consumer.socksPort, host, target.port, { user: 'region-gb', password: 'x' })
      expect(r.reply, host).toBe(2)
      r.socket.destroy()
    }
    // curl with the literal address, both proxies
    const c = await curl(['--proxy', `socks5h://region-gb:x@127.0.0.1:${consumer.socksPort}`, `http://127.0.0.1:${target.port}/hello`])
    expect(c.stderr, JSON.stringify({ code: c.code, out: c.stdout.toString() })).toMatch(/\(2\)|not allowed/i)
    expect(c.code).toBe(97)
    const h = await curl(['-i', ...via('gb'), `http://localhost:${target.port}/hello`])
    expect(h.stdout.toString()).toMatch(/^HTTP\/1\.1 403/)
    expect(target.connections).toBe(before)
    const s = await exits.gb.status()
    expect(s.exit.deniedByStatus.POLICY_DENIED).toBeGreaterThanOrEqual(forms.length + 2)
    expect(s.warnings).toEqual([])
  })

  it('credit limit: a consumer below it gets INSUFFICIENT_CREDIT (HTTP 402, SOCKS 0x02)', async () => {
    const r = await curl(['-i', ...via('es'), `http://127.0.0.1:${target.port}/hello`])
    expect(r.stdout.toString()).toMatch(/^HTTP\/1\.1 402/)
    expect(r.stdout.toString()).toContain('INSUFFICIENT_CREDIT')
    const socks = await socksConnect(consumer.socksPort, '127.0.0.1', target.port, { user: 'region-es', password: 'x' })
    expect(socks.reply).toBe(2)
    socks.socket.destroy()
  })

  it('pause and resume through the control API', async () => {
    const seqBefore = (await exits.it.status()).routing.advertising.lastSeq
    await callApi(exits.it.dataDir, '/v1/exit/pause', { method: 'POST', body: {} })
    // its ad says so at once (load 1), not at the next 30 s check: consumers stop picking it
    await waitFor(async () => (await exits.it.status()).routing.advertising.lastSeq !== seqBefore, { timeoutMs: 10_000, what: 'a new ad after the pause' })
    const rows = await runCliJson(['providers', '--region', 'it', '--json', '--data-dir', consumer.dataDir])
    expect(rows.find((r: any) => r.peerId === exits.it.peerId)?.load).toBe(1)
    const paused = await curl(['-i', ...via('it'), `http://127.0.0.1:${target.port}/hello`])
    expect(paused.stdout.toString()).toMatch(/^HTTP\/1\.1 503/)
    expect(paused.stdout.toString()).toContain('paused')
    await callApi(exits.it.dataDir, '/v1/exit/resume', { method: 'POST', body: {} })
    const ok = await curl([...via('it'), `http://127.0.0.1:${target.port}/hello`])
    expect(ok.stdout.toString()).toBe('hello from the target\n')
    // the operator's log says when, at once
    await waitFor(() => /info\s+exit paused: it takes no new tunnels/.test(exits.it.proc.output) && /info\s+exit resumed/.test(exits.it.proc.output), { timeoutMs: 5_000, what: 'the pause and the resume in the exit\'s log' })
    // a node that is no exit says why, whichever way it was turned off
    const none = await runCli(['pause', '--data-dir', consumer.dataDir])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain('/v1/exit/pause: 409 this node is not an exit (exit.enabled = false: --no-supply, SPAREBAND_SUPPLY=false or config.toml)')
  })
})
