import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFile, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { curl, spawnNode, waitForPeers, LOOPBACK } from '../utils/network.ts'
import { NodeProcess, runCli, tempDir, waitFor } from '../utils/cli.ts'
import { callApi } from '../../src/cli/api-client.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

const MiB = 1024 * 1024

/**
 * An exit, a paying consumer, a consumer that never signs, and an observer
 * that takes no part but follows the receipt gossip.
 */
describe('accounting end to end: receipts, ledger, gossip, credit at risk', () => {
  let target: TargetServer
  let exit: SpawnedNode
  let consumer: SpawnedNode
  let observer: SpawnedNode
  let freeloader: SpawnedNode
  let restarted: NodeProcess | undefined
  // credit_limit -1: the freeloader (no proof of work: it keeps no accounting) is let in on credit, to be cut off at the threshold
  const exitConfig = (port: number): string => `[exit]\nallow_private_targets = true\nallowed_ports = [${port}]\n[accounting]\npublish_interval_seconds = 1\ncredit_limit = -1\n`

  beforeAll(async () => {
    target = await startTargetServer(32 * MiB)
    exit = await spawnNode({ region: 'de', config: exitConfig(target.port) })
    const boot = ['--bootstrap', exit.addresses[0]]
    ;[consumer, observer, freeloader] = await Promise.all([
      spawnNode({ region: 'jp', args: ['--no-supply', ...boot] }),
      spawnNode({ region: 'fr', args: ['--no-supply', ...boot] }),
      spawnNode({ region: 'it', args: ['--no-supply', ...boot], config: '[accounting]\nenabled = false\n' })
    ])
    await Promise.all([waitForPeers(consumer, [exit.peerId]), waitForPeers(freeloader, [exit.peerId]), waitForPeers(observer, [exit.peerId])])
    // the observer must follow the receipt topic before the exit publishes: gossip keeps nothing for late joiners
    await waitFor(async () => (await exit.status()).accounting.gossip.subscribers >= 2, { what: 'the consumer and the observer on the receipt topic' })
  })
  afterAll(async () => {
    await Promise.all([exit, consumer, observer, freeloader].map(async n => n?.proc.kill()))
    await restarted?.kill()
    await target?.close()
  })

  const balance = async (n: SpawnedNode): Promise<any> => callApi(n.dataDir, '/v1/balance')
  const receipts = async (dataDir: string): Promise<any[]> => callApi(dataDir, '/v1/receipts')

  it('after 32 MiB, the exit has earned what the consumer has spent, within one receipt interval', async () => {
    const r = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.1:${target.port}/blob`])
    expect(sha256(r.stdout)).toBe(target.blobSha256)
    // the last receipt goes out within the 5 s interval
    await waitFor(async () => (await balance(consumer)).pending.usedUnsignedBytes === 0 && Number((await balance(consumer)).bytesUsed) >= 32 * MiB, { what: 'the final receipt' })
    const [e, c] = await Promise.all([balance(exit), balance(consumer)])
    expect(Number(e.bytesCarried)).toBe(Number(c.bytesUsed))
    expect(Number(c.bytesUsed) - 32 * MiB).toBeGreaterThanOrEqual(0)
    expect(Number(c.bytesUsed) - 32 * MiB).toBeLessThan(1 * MiB)
    expect(e.earned).toBe(c.spent)
    expect(Number(c.spent)).toBeCloseTo(Number(c.bytesUsed) / 1e9, 5) // 1 credit per GB
    expect(Number(e.balance)).toBeCloseTo(Number(e.allowance) + Number(e.earned), 6)
    expect(e.pending.carriedUnsignedBytes).toBeLessThan(1 * MiB)
    const [er, cr] = await Promise.all([receipts(exit.dataDir), receipts(consumer.dataDir)])
    expect(er[0].sessionId).toBe(cr[0].sessionId)
    expect(er[0].seq).toBe(cr[0].seq)
  })

  it('a node that took no part sees the receipt through gossip', async () => {
    const mine = (await receipts(exit.dataDir))[0]
    const seen = await waitFor(async () => (await receipts(observer.dataDir)).find(r => r.sessionId === mine.sessionId), { what: 'the gossiped receipt' })
    expect(seen.source).toBe('gossip')
    expect(seen.consumer).toBe(consumer.peerId)
    expect(seen.exit).toBe(exit.peerId)
    const s = await observer.status()
    expect(s.accounting.gossip.accepted).toBeGreaterThanOrEqual(1)
    expect(s.accounting.gossip.rejected).toBe(0)
    // the consumer's proof of work came with the receipt, so the observer, which never met the consumer, credits the exit in full
    const ledger = Ledger.open(join(observer.dataDir, 'ledger.db'), { readOnly: true })
    try {
      const held = ledger.receipts().find(r => r.receipt.sessionId === mine.sessionId)!
      expect(ledger.pow(peerIdFromString(consumer.peerId))).toBeDefined()
      expect(ledger.balance(peerIdFromString(exit.peerId))).toMatchObject({ earnedMicro: held.costMicro, unpaidMicro: 0n })
    } finally {
      ledger.close()
    }
  })

  it('an export verifies offline, and one altered byte makes verify fail naming the entry', async () => {
    const dir = await tempDir('sb-export-')
    for (const format of ['json', 'csv']) {
      const exported = await runCli(['receipts', '--export', format, '--data-dir', exit.dataDir])
      expect(exported.code).toBe(0)
      const file = join(dir, `receipts.${format}`)
      await writeFile(file, exported.stdout)
      const ok = await runCli(['verify', file])
      expect(ok.code, ok.stderr).toBe(0)
      expect(ok.stdout).toContain('OK, 1 receipt(s) verified')
      // change one digit of the download counter
      const text = await readFile(file, 'utf8')
      const down = String((await receipts(exit.dataDir))[0].bytesDown)
      const at = text.indexOf(down)
      expect(at).toBeGreaterThan(0)
      const digit = text[at + down.length - 1]
      const altered = text.slice(0, at + down.length - 1) + (digit === '9' ? '8' : String(Number(digit) + 1)) + text.slice(at + down.length)
      await writeFile(file, altered)
      const bad = await runCli(['verify', file])
      expect(bad.code).toBe(1)
      expect(bad.stderr).toMatch(/entry 1/)
    }
  })

  it('a consumer that does not sign is cut off after the threshold (4 MiB) and then refused', async () => {
    const r = await curl(['--max-time', '6', '--proxy', `http://127.0.0.1:${freeloader.httpPort}`, `http://127.0.0.1:${target.port}/blob`], 8000)
    expect(r.code).not.toBe(0) // held, then timed out
    expect(r.stdout.byteLength).toBeGreaterThan(1 * MiB)
    expect(r.stdout.byteLength).toBeLessThan(6 * MiB)
    const next = await curl(['-i', '--proxy', `http://127.0.0.1:${freeloader.httpPort}`, `http://127.0.0.1:${target.port}/hello`])
    expect(next.stdout.toString()).toMatch(/^HTTP\/1\.1 429/)
    expect(next.stdout.toString()).toContain('not signed')
    // the paying consumer is not affected
    const ok = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.1:${target.port}/hello`])
    expect(ok.stdout.toString()).toBe('hello from the target\n')
  })

  it('SIGKILL of the exit mid-transfer loses no countersigned receipt', async () => {
    const transfer = curl(['--limit-rate', '4M', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.1:${target.port}/blob`])
    // wait until the consumer holds a few countersigned receipts of a new session
    const seqBefore = new Map((await receipts(consumer.dataDir)).map(r => [r.sessionId, Number(r.seq)]))
    const session = await waitFor(async () => (await receipts(consumer.dataDir)).find(r => Number(r.seq) >= (seqBefore.get(r.sessionId) ?? 0) + 3), { what: 'countersigned receipts' })
    await exit.proc.kill() // SIGKILL
    await transfer
    const held = (await receipts(consumer.dataDir).catch(err => { throw new Error(`${err.message}\nconsumer output:\n${consumer.proc.output.slice(-3000)}`) })).find(r => r.sessionId === session.sessionId)
    restarted = new NodeProcess(exit.dataDir, [...LOOPBACK, '--listen', '/ip4/127.0.0.1/tcp/0'])
    await restarted.ready()
    const kept = (await receipts(exit.dataDir)).find(r => r.sessionId === session.sessionId)
    expect(kept).toBeDefined()
    // the exit stores a receipt before it hands the countersigned copy back
    expect(BigInt(kept.seq)).toBeGreaterThanOrEqual(BigInt(held.seq))
    expect(BigInt(kept.bytesDown)).toBeGreaterThanOrEqual(BigInt(held.bytesDown))
  })
})
