import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { curl, spawnNode } from '../utils/network.ts'
import { runCli, runCliJson, waitFor } from '../utils/cli.ts'
import { socksConnect } from '../utils/socks-client.ts'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

/**
 * Six exits (de, de, jp, us, us-ca, fr) and a consumer that knows only one
 * of them: it finds the rest through region keys and capacity ads in the DHT.
 */
describe('routing by region through the DHT', () => {
  let target: TargetServer
  let consumer: SpawnedNode
  const exits: SpawnedNode[] = []
  const regions = ['de', 'de', 'jp', 'us', 'us-ca', 'fr']
  const exitsIn = (r: string): SpawnedNode[] => exits.filter((_, i) => regions[i] === r)

  beforeAll(async () => {
    target = await startTargetServer(16 * 1024 * 1024)
    const args = ['--allow-private-targets', '--exit-ports', String(target.port)]
    const first = await spawnNode({ region: regions[0], args })
    exits.push(first)
    exits.push(...await Promise.all(regions.slice(1).map(async region => spawnNode({ region, args: [...args, '--bootstrap', first.addresses[0]] }))))
    consumer = await spawnNode({ region: 'ch', args: ['--no-supply', '--bootstrap', exits[5].addresses[0]] })
  })
  afterAll(async () => {
    await Promise.all([consumer, ...exits].map(async n => n?.proc.kill()))
    await target?.close()
  })

  const providers = async (region: string): Promise<string[]> =>
    (await runCliJson(['providers', '--region', region, '--json', '--data-dir', consumer.dataDir])).map((p: any) => p.peerId).sort()
  /** The region's exits whose ads the consumer found (identify may list an exit it is connected to before that). */
  const advertised = async (region: string): Promise<string[]> =>
    (await runCliJson(['providers', '--region', region, '--json', '--data-dir', consumer.dataDir])).filter((p: any) => p.source === 'dht').map((p: any) => p.peerId).sort()
  const ids = (nodes: SpawnedNode[]): string[] => nodes.map(n => n.peerId).sort()

  it('providers --region lists exactly the exits of that region (a country includes its subdivisions)', async () => {
    await waitFor(async () => (await advertised('us')).length === 2 && (await advertised('de')).length === 2 && (await advertised('fr')).length === 1, { timeoutMs: 60_000, what: 'the ads to be found' })
    expect(await providers('jp')).toEqual(ids(exitsIn('jp')))
    expect(await providers('us')).toEqual(ids([...exitsIn('us'), ...exitsIn('us-ca')]))
    expect(await providers('us-ca')).toEqual(ids(exitsIn('us-ca')))
    expect(await providers('de')).toEqual(ids(exitsIn('de')))
    expect(await providers('it')).toEqual([])
    const rows = await runCliJson(['providers', '--region', 'fr', '--json', '--data-dir', consumer.dataDir])
    expect(rows[0]).toMatchObject({ peerId: exitsIn('fr')[0].peerId, region: 'fr', capacityMbps: 100, pricePerGb: 1, verified: 'unverifiable', source: 'dht' })
    expect(['direct', 'relayed']).toContain(rows[0].reachability)
    expect(rows[0].score).toBeGreaterThan(0)
    // every row has every key: what is not known yet is null, not missing
    expect(Object.keys(rows[0]).sort()).toEqual(['askedLast', 'attempts', 'capacityMbps', 'expiresAt', 'load', 'ownTunnels', 'peerId', 'pricePerGb', 'reachability', 'region', 'reputation', 'rttMs', 'score', 'source', 'verified'])
    expect(rows[0].reputation).toBeNull()
    // no tunnel through it yet
    expect(rows[0].attempts).toEqual({ succeeded: 0, failed: 0, bandwidth: null })
  })

  // before any de traffic: neither de exit has telemetry yet, so only the consumer's own tunnels tell them apart
  it('tunnels asked for at once are spread over the region\'s exits, not piled on the best one', async () => {
    const de = exitsIn('de')
    const open = async (): Promise<number[]> => Promise.all(de.map(async e => (await e.status()).exit.tunnelsOpen as number))
    await waitFor(async () => (await open()).every(n => n === 0), { what: 'no tunnel open at the de exits' })
    const held = await Promise.all(Array.from({ length: 8 }, async () => socksConnect(consumer.socksPort, '127.0.0.1', target.port, { user: 'region-de', password: 'x' })))
    expect(held.map(t => t.reply)).toEqual(Array(8).fill(0))
    const counts = await open()
    expect(counts[0] + counts[1]).toBe(8)
    // the consumer counts its tunnels being set up or open into each exit's load; blind to
    // them, it sent all eight to the best-scored exit, bar the odd exploration round
    expect(Math.min(...counts)).toBeGreaterThanOrEqual(3)
    for (const t of held) t.socket.destroy()
    await waitFor(async () => (await open()).every(n => n === 0), { what: 'the held tunnels to close' })
  })

  it('region-jp traffic is carried by the jp exit and no other', async () => {
    const before = await Promise.all(exits.map(async e => (await e.status()).exit.bytesOut))
    const r = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-jp:', `http://127.0.0.1:${target.port}/blob`])
    expect(sha256(r.stdout)).toBe(target.blobSha256)
    const after = await Promise.all(exits.map(async e => (await e.status()).exit.bytesOut))
    exits.forEach((_, i) => {
      if (regions[i] === 'jp') expect(after[i] - before[i]).toBeGreaterThanOrEqual(target.blob.byteLength)
      else expect(after[i] - before[i]).toBe(0)
    })
    // providers shows the attempt it made through the jp exit, and what it measured
    const [jp] = await runCliJson(['providers', '--region', 'jp', '--json', '--data-dir', consumer.dataDir])
    expect(jp.attempts.succeeded).toBeGreaterThanOrEqual(1)
    expect(jp.attempts.failed).toBe(0)
    expect(jp.attempts.bandwidth).toBeGreaterThan(0)
    // and the table shows it, in Mbps beside the capacity the ad claims
    const table = await runCli(['providers', '--region', 'jp', '--data-dir', consumer.dataDir])
    const [header, row] = table.stdout.split('\n')
    const cells = row.trim().split(/\s{2,}/)
    expect(header.trim().split(/\s{2,}/).slice(0, 5)).toEqual(['PEER', 'REGION', 'CAPACITY Mbps', 'MEASURED Mbps', 'LOAD'])
    expect(cells[0]).toBe(jp.peerId)
    expect(Number(cells[3])).toBeCloseTo(jp.attempts.bandwidth * 8 / 1e6, 1)
    expect(table.stdout).not.toContain('own exit')
    // the jp exit asking for jp: its own exit is not listed, and it says why
    const own = await runCli(['providers', '--region', 'jp', '--data-dir', exitsIn('jp')[0].dataDir])
    expect(own.stdout).toContain('0 exit(s) in jp\n(this node\'s own exit, in jp, is not listed: it does not carry this node\'s traffic)\n')
  })

  it('a session id sticks to one exit across 20 requests', async () => {
    const de = exitsIn('de')
    const before = await Promise.all(de.map(async e => (await e.status()).exit.tunnelsTotal))
    for (let i = 0; i < 20; i++) {
      const r = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de-session-sticky1:', `http://127.0.0.1:${target.port}/hello`])
      expect(r.stdout.toString()).toBe('hello from the target\n')
    }
    const delta = (await Promise.all(de.map(async e => (await e.status()).exit.tunnelsTotal))).map((n, i) => n - before[i]).sort()
    expect(delta).toEqual([0, 20])
  })

  it('a refusal that is the target\'s fault (POLICY_DENIED) is not retried at another exit', async () => {
    const de = exitsIn('de')
    const denied = async (): Promise<number> => (await Promise.all(de.map(async e => (await e.status()).exit.deniedByStatus.POLICY_DENIED ?? 0))).reduce((a, b) => a + b, 0)
    const before = await denied()
    const r = await curl(['-i', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de:', 'http://127.0.0.1:22/'])
    expect(r.stdout.toString()).toMatch(/^HTTP\/1\.1 403/)
    expect(await denied() - before).toBe(1)
  })

  it('when a de exit dies mid-transfer, the next region-de request succeeds through the other', async () => {
    const de = exitsIn('de')
    // a download the target itself sends slowly keeps a tunnel open while we
    // find its exit and kill it (a client-side rate limit is not enough: the
    // buffers on the way can hold the whole blob before the kill lands)
    const transfer = curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de-session-victim:', `http://127.0.0.1:${target.port}/drip`])
    const carrier = await waitFor(async () => {
      for (const e of de) if ((await e.status()).exit.tunnelsOpen > 0) return e
      return undefined
    }, { what: 'the carrying exit' })
    await carrier!.proc.kill()
    const cut = await transfer
    expect(cut.stdout.byteLength).toBeLessThan(target.blob.byteLength)
    const survivor = de.find(e => e !== carrier)!
    const before = (await survivor.status()).exit.tunnelsTotal
    for (let i = 0; i < 3; i++) {
      // the same session, so the dead exit is the first choice: failover must move on
      const r = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de-session-victim:', `http://127.0.0.1:${target.port}/hello`])
      expect(r.stdout.toString()).toBe('hello from the target\n')
    }
    expect((await survivor.status()).exit.tunnelsTotal - before).toBe(3)
    // and providers says which is gone (its ad lives on for hours): requests ask it last
    const rows: Array<{ peerId: string, askedLast: boolean }> = await runCliJson(['providers', '--region', 'de', '--json', '--data-dir', consumer.dataDir])
    expect(rows.find(r => r.peerId === carrier!.peerId)?.askedLast).toBe(true)
    expect(rows.find(r => r.peerId === survivor.peerId)?.askedLast).toBe(false)
  })
})
