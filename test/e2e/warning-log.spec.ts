import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startTargetServer } from '../utils/target-server.ts'
import { curl, spawnNode } from '../utils/network.ts'
import { waitFor } from '../utils/cli.ts'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

/**
 * A warning that comes after start reaches the start log (printed only at
 * start, it reached no one who did not poll `status`): a consumer whose own
 * ledger gives it an allowance of 2 MB, which it spends.
 */
describe('the start log, after start', () => {
  let target: TargetServer
  let exit: SpawnedNode
  let consumer: SpawnedNode

  beforeAll(async () => {
    target = await startTargetServer(8 * 1024 * 1024)
    exit = await spawnNode({ region: 'de', args: ['--allow-private-targets', '--exit-ports', String(target.port)] })
    consumer = await spawnNode({ region: 'ch', args: ['--no-supply', '--bootstrap', exit.addresses[0]], config: '[accounting]\nallowance = 0.002\n' })
  })
  afterAll(async () => {
    await Promise.all([consumer, exit].map(async n => n?.proc.kill()))
    await target?.close()
  })

  it('says once that the node is out of credit when it comes to that, with its balance', async () => {
    const outOfCredit = (): number => consumer.proc.output.split('\n').filter(l => / warn +out of credit: balance /.test(l)).length
    // its proof of work done, it has its allowance: no warning yet
    await waitFor(async () => (await consumer.status()).accounting.proofOfWork.solved === true, { what: 'the proof of work' })
    expect((await consumer.status()).warnings.some((w: string) => w.startsWith('out of credit'))).toBe(false)
    expect(outOfCredit()).toBe(0)
    const r = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, '--proxy-user', 'region-de:', `http://127.0.0.1:${target.port}/blob`])
    // the exit would carry all 8 MiB (its ledger grants 1 credit); the node stops itself at its own
    // balance (accounting.stop_at_balance), so the download is cut near what 0.002 credits pay for
    expect(r.code).not.toBe(0)
    expect(r.stdout.byteLength).toBeLessThan(target.blob.byteLength)
    await waitFor(() => outOfCredit() > 0, { timeoutMs: 30_000, what: 'the warning in the log' })
    const line = consumer.proc.output.split('\n').find(l => / warn +out of credit: /.test(l))!
    expect(line).toMatch(/out of credit: balance -?0\.00\d+ \(allowance 0\.002 \+ earned 0 - spent 0\.00\d+\); this node opens no tunnel \(HTTP 402, SOCKS5 0x02\) and ends its open ones/)
    expect(line).toMatch(/--no-supply \(exit\.enabled = false\) turns off$/)
    // one line, not one per reading, though the figures may move
    await new Promise(resolve => setTimeout(resolve, 11_000))
    expect(outOfCredit()).toBe(1)
  }, 90_000)
})
