/**
 * A consumer stops at its own balance (accounting.stop_at_balance): each
 * exit judges it by its own ledger, which hears of what it spent at the
 * others only by gossip, a minute or so later; its own ledger knows it all.
 * Two exits in one region that would each carry 1 GB on credit, and
 * consumers whose own ledgers grant them 8 MB: four downloads at once,
 * spread over both exits. Real nodes over TCP on loopback, in this
 * process, and curl through the consumer's HTTP proxy.
 */

import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { sha256, startTargetServer } from '../utils/target-server.ts'
import { curl } from '../utils/network.ts'
import { socksConnect } from '../utils/socks-client.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { TargetServer } from '../utils/target-server.ts'

const MiB = 1024 * 1024
const BLOB = 32 * MiB
/** What the consumers' own ledgers grant them: 0.008 credits at 1 credit per 10^9 bytes pays for 8,000,000 bytes. */
const OWN_ALLOWANCE = 0.008
const PAID_BYTES = 8_000_000

describe('a consumer stops at its own balance, whatever each exit still allows', () => {
  let target: TargetServer
  const exits: SparebandNode[] = []
  const consumers: SparebandNode[] = []
  const base = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 } }

  async function newConsumer (stopAtBalance?: number): Promise<SparebandNode> {
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-stop-'),
      config: {
        ...base,
        network: { local_testnet: true, bootstrap: exits.flatMap(e => e.status().addresses) },
        accounting: { pow_difficulty: 8, allowance: OWN_ALLOWANCE, ...(stopAtBalance != null ? { stop_at_balance: stopAtBalance } : {}) },
        exit: { enabled: false }
      }
    })
    consumers.push(node)
    await node.start()
    await waitFor(async () => (await node.peers()).filter(p => p.agent?.includes('exit')).length === 2, { what: 'identify of both exits', intervalMs: 20 })
    await waitFor(() => (node.status() as any).accounting.proofOfWork.solved, { what: "the consumer's proof of work" })
    return node
  }

  beforeAll(async () => {
    target = await startTargetServer(BLOB)
    for (let i = 0; i < 2; i++) {
      const exit = await createSparebandNode({
        dataDir: await tempDir('sb-stop-'),
        // the default allowance: 1 credit, 1 GB at the default price, for every proven identity
        config: { ...base, region: 'de', network: { local_testnet: true }, accounting: { pow_difficulty: 8 }, exit: { allow_private_targets: true, allowed_ports: [target.port] } }
      })
      await exit.start()
      exits.push(exit)
    }
  })
  afterAll(async () => {
    for (const c of consumers) await c.stop()
    for (const e of exits) await e.stop()
    await target?.close()
  })

  const totals = (): number[] => exits.map(e => (e.status() as any).exit.tunnelsTotal)
  const fourDownloads = async (consumer: SparebandNode): Promise<Array<Awaited<ReturnType<typeof curl>>>> => {
    const http = (consumer.status() as any).proxy.httpPort
    return Promise.all(Array.from({ length: 4 }, async () => curl(['--proxy', `http://127.0.0.1:${http}`, '--proxy-user', 'region-de:', `http://127.0.0.1:${target.port}/blob`], 60_000)))
  }

  it('is carried about what its own balance pays for over both exits together, then refuses itself', async () => {
    const consumer = await newConsumer()
    expect((consumer.status() as any).accounting.outOfCredit).toBeNull()
    const before = totals()
    const runs = await fourDownloads(consumer)
    const after = totals()
    // spread over both exits, each of which would have carried all four to the end
    expect(after[0] - before[0]).toBeGreaterThan(0)
    expect(after[1] - before[1]).toBeGreaterThan(0)
    // cut short, with a reset, not a stall
    for (const r of runs) {
      expect(r.code).not.toBe(0)
      expect(r.stderr).not.toMatch(/timed out/i)
    }
    const got = runs.reduce((n, r) => n + r.stdout.byteLength, 0)
    // what its balance paid for, less what was on its way to curl at the cut, plus what came
    // in before the receipt that showed the balance spent was countersigned (a MiB or so a session)
    expect(got).toBeGreaterThan(PAID_BYTES / 2)
    expect(got).toBeLessThan(PAID_BYTES + 6 * MiB)
    expect(Number((consumer.status() as any).accounting.balance)).toBeLessThanOrEqual(0)
    // balance (the API's, the CLI's) says so, with what this node can do
    expect((consumer.status() as any).accounting.outOfCredit).toMatch(/^out of credit: balance -?[0-9.]+ .*; it earns credit only as an exit, which --no-supply \(exit\.enabled = false\) turns off$/)

    // the next request is refused by the consumer itself: no exit is asked
    const http = (consumer.status() as any).proxy.httpPort
    const next = await curl(['-i', '--proxy', `http://127.0.0.1:${http}`, `http://127.0.0.1:${target.port}/hello`])
    expect(next.stdout.toString()).toMatch(/^HTTP\/1\.1 402 Payment Required/)
    expect(next.stdout.toString()).toMatch(/this node is out of credit: its balance is -?[0-9.]+, not above 0 \(accounting\.stop_at_balance\)/)
    // with what this node (exit off) can do about it
    expect(next.stdout.toString()).toContain('(accounting.stop_at_balance); it earns credit only as an exit, which --no-supply (exit.enabled = false) turns off; a lower accounting.stop_at_balance (SPAREBAND_STOP_AT_BALANCE) goes on into credit that exits extend, where they do')
    expect(next.stdout.toString()).toMatch(/\r\nX-Spareband-Status: INSUFFICIENT_CREDIT\r\n/i)
    expect(next.stdout.toString()).not.toMatch(/X-Spareband-Exit/i)
    // and through SOCKS5: "not allowed by ruleset"
    const socks = await socksConnect((consumer.status() as any).proxy.socksPort, '127.0.0.1', target.port)
    expect(socks.reply).toBe(0x02)
    socks.socket.destroy()
    // and to an embedding app: a TunnelRefusedError naming no exit
    await expect(consumer.connect('127.0.0.1', target.port, { region: 'de' })).rejects.toMatchObject({ name: 'TunnelRefusedError', status: 'INSUFFICIENT_CREDIT', exit: undefined })
    expect(totals()).toEqual(after)
    expect((consumer.status() as any).warnings.join('\n')).toMatch(/this node opens no tunnel \(HTTP 402, SOCKS5 0x02\) and ends its open ones/)
  })

  it('with the stop set below what the exits extend, goes on into their credit: all four downloads complete', async () => {
    const consumer = await newConsumer(-1000)
    const runs = await fourDownloads(consumer)
    for (const r of runs) {
      expect(r.code).toBe(0)
      expect(sha256(r.stdout)).toBe(target.blobSha256)
    }
    // its own ledger has it deep in debt; each exit, by its own, was paid
    await waitFor(() => Number((consumer.status() as any).accounting.balance) < -0.1, { what: "the consumer's last receipts" })
  })
})
