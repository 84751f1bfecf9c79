/**
 * `/metrics` on the control API: Prometheus text of what status() reports,
 * behind the API token. Real nodes on loopback, real traffic through the
 * consumer's SOCKS5 proxy, the exposition parsed as Prometheus would.
 */

import { describe, it, expect } from 'vitest'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { useExitAndConsumer } from '../utils/in-process.ts'
import { socksConnect } from '../utils/socks-client.ts'
import { waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'

interface Sample { name: string, labels: Record<string, string>, value: number }

/** The samples of a Prometheus text exposition (no timestamps, as prom-client writes it). */
function parseExposition (text: string): { samples: Sample[], types: Map<string, string> } {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type != null) types.set(type[1], type[2])
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m == null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2]
    samples.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return { samples, types }
}

function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
}

async function scrape (node: SparebandNode, token?: string): Promise<Response> {
  const api = JSON.parse(await readFile(join(node.dataDir, 'api.json'), 'utf8'))
  token ??= (await readFile(join(node.dataDir, 'api-token'), 'utf8')).trim()
  return fetch(`${api.url as string}/metrics`, { headers: { authorization: `Bearer ${token}` } })
}

describe('/metrics', () => {
  const t = useExitAndConsumer()

  it('needs the API token', async () => {
    expect((await scrape(t.exit, 'wrong')).status).toBe(401)
  })

  it("reports the exit's and the proxy's counters as status() has them, typed as Prometheus expects", async () => {
    const socksPort = (t.consumer.status() as any).proxy.socksPort
    const payload = Buffer.alloc(300_000, 7)
    const s = await socksConnect(socksPort, '127.0.0.1', t.echo.port)
    expect(s.reply).toBe(0)
    let echoed = 0
    s.socket.on('data', (d: Buffer) => { echoed += d.byteLength })
    s.socket.end(payload)
    await waitFor(() => echoed === payload.byteLength, { what: 'the echo' })
    // a tunnel the policy refuses (a port the exit does not allow)
    const denied = await socksConnect(socksPort, '127.0.0.1', 9)
    expect(denied.reply).toBe(2)
    denied.socket.destroy()
    await waitFor(() => (t.exit.status() as any).exit.tunnelsOpen === 0 && (t.exit.status() as any).exit.bytesOut >= payload.byteLength, { what: 'the tunnel closed' })

    const res = await scrape(t.exit)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const { samples, types } = parseExposition(await res.text())
    const status = t.exit.status() as any
    expect(value(samples, 'spareband_info', { peer_id: t.exit.libp2p.peerId.toString(), region: 'de' })).toBe(1)
    expect(value(samples, 'spareband_exit_enabled')).toBe(1)
    expect(value(samples, 'spareband_exit_bytes_total', { direction: 'in' })).toBe(status.exit.bytesIn)
    expect(value(samples, 'spareband_exit_bytes_total', { direction: 'out' })).toBe(status.exit.bytesOut)
    expect(status.exit.bytesIn).toBeGreaterThanOrEqual(payload.byteLength)
    expect(value(samples, 'spareband_exit_tunnels_total')).toBe(status.exit.tunnelsTotal)
    expect(value(samples, 'spareband_exit_denied_total', { status: 'POLICY_DENIED' })).toBeGreaterThanOrEqual(1)
    expect(value(samples, 'spareband_credits', { kind: 'allowance' })).toBe(Number(status.accounting.allowance))
    expect(types.get('spareband_exit_bytes_total')).toBe('counter')
    expect(types.get('spareband_exit_tunnels_open')).toBe('gauge')
    // the process's own figures come along
    // since the process started, as Prometheus means it, not since the first scrape
    // (this process has started two nodes and carried traffic by now)
    const cpu = process.cpuUsage()
    expect(value(samples, 'process_cpu_seconds_total')).toBeGreaterThan((cpu.user + cpu.system) / 1e6 * 0.9)
    expect(value(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(cpu.user / 1e6 * 0.9)
    expect(value(samples, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0)

    const mine = parseExposition(await (await scrape(t.consumer)).text()).samples
    const c = t.consumer.status() as any
    expect(value(mine, 'spareband_exit_enabled')).toBe(0)
    expect(value(mine, 'spareband_proxy_bytes_total', { direction: 'out' })).toBe(c.proxy.bytesOut)
    expect(c.proxy.bytesOut).toBeGreaterThanOrEqual(payload.byteLength)
    expect(value(mine, 'spareband_proxy_tunnels_total')).toBe(c.proxy.tunnelsTotal)
    // the refused tunnel, by what the client was told; none refused by the proxy itself
    expect(c.proxy.failedByStatus).toEqual({ POLICY_DENIED: 1 })
    expect(value(mine, 'spareband_proxy_failed_total', { status: 'POLICY_DENIED' })).toBe(1)
    expect(value(mine, 'spareband_proxy_refused_total', { kind: 'targeting' })).toBe(0)
    // the DHT's store: the exit's ad and provider entry are held at the consumer, nothing dropped
    await waitFor(() => (t.consumer.status() as any).dht.stored.records > 0 && (t.consumer.status() as any).dht.stored.providers > 0, { what: 'the exit\'s ad and provider entry at the consumer' })
    const dht = parseExposition(await (await scrape(t.consumer)).text())
    const stored = (t.consumer.status() as any).dht.stored
    expect(value(dht.samples, 'spareband_dht_stored', { kind: 'records' })).toBe(stored.records)
    expect(value(dht.samples, 'spareband_dht_stored', { kind: 'providers' })).toBe(stored.providers)
    expect(value(dht.samples, 'spareband_dht_stored', { kind: 'records' })).toBeGreaterThanOrEqual(1)
    for (const [kind, reason] of [['records', 'room'], ['providers', 'room'], ['records', 'peer_bound'], ['providers', 'peer_bound'], ['records', 'older']]) {
      expect(value(dht.samples, 'spareband_dht_dropped_total', { kind, reason }), `${kind} ${reason}`).toBe(0)
    }
    expect(dht.types.get('spareband_dht_dropped_total')).toBe('counter')
  })

  it('a figure status does not have is absent, not 0: an exit\'s on a node that is none, a reputation with no report', async () => {
    const theirs = parseExposition(await (await scrape(t.exit)).text())
    expect((t.exit.status() as any).accounting.reputation.own.score).toBeNull()
    expect(value(theirs.samples, 'spareband_reputation')).toBeUndefined()
    // declared all the same, as the gauge it is (it can fall)
    expect(theirs.types.get('spareband_reputation')).toBe('gauge')
    expect(theirs.types.get('spareband_reputation_reporters')).toBe('gauge')
    expect(value(theirs.samples, 'spareband_reputation_reporters')).toBe(0)
    expect(value(theirs.samples, 'spareband_exit_paused')).toBe(0)

    const mine = parseExposition(await (await scrape(t.consumer)).text())
    expect((t.consumer.status() as any).exit.paused).toBeUndefined()
    for (const name of ['spareband_exit_paused', 'spareband_exit_within_schedule']) {
      expect(value(mine.samples, name), name).toBeUndefined()
      expect(mine.types.get(name), name).toBe('gauge')
    }
  })

  it('moves with the node: the next scrape has the next figures', async () => {
    const before = value(parseExposition(await (await scrape(t.exit)).text()).samples, 'spareband_exit_tunnels_total')!
    const s = await socksConnect((t.consumer.status() as any).proxy.socksPort, '127.0.0.1', t.echo.port)
    expect(s.reply).toBe(0)
    s.socket.destroy()
    await waitFor(async () => value(parseExposition(await (await scrape(t.exit)).text()).samples, 'spareband_exit_tunnels_total') === before + 1, { what: 'the tunnel counted' })
  })
})
