import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { curl, exitAndConsumer } from '../utils/network.ts'
import { waitFor } from '../utils/cli.ts'
import { callApi } from '../../src/cli/api-client.ts'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

const MiB = 1024 * 1024

/**
 * A consumer whose client gives up on downloads half way (a browser's
 * cancelled page, a scraper's timeout). What was in flight when the tunnel
 * was cut never reached the consumer, so it signs none of it; the exit must
 * not count that against it for good, or a few cancellations hold it at
 * the unsigned threshold. Real processes, real curl.
 */
describe('cancelled downloads', () => {
  let target: TargetServer
  let exit: SpawnedNode
  let consumer: SpawnedNode

  beforeAll(async () => {
    target = await startTargetServer(64 * MiB)
    ;({ exit, consumer } = await exitAndConsumer([target.port]))
  })
  afterAll(async () => {
    await Promise.all([exit?.proc.kill(), consumer?.proc.kill()])
    await target?.close()
  })

  it('leave the consumer free to go on, with what was lost on the way let off', async () => {
    let cut = 0
    for (let i = 0; i < 4; i++) {
      // 20 MB/s for at most a second of a 64 MiB blob: cut mid-transfer
      const r = await curl(['--limit-rate', '20M', '--max-time', '1', '--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.1:${target.port}/blob`], 3000)
      if (r.stdout.byteLength > MiB && r.stdout.byteLength < 64 * MiB) cut++
    }
    expect(cut).toBeGreaterThanOrEqual(2)
    const pending = async (): Promise<any> => (await callApi<any>(exit.dataDir, '/v1/balance')).pending
    await waitFor(async () => (await pending()).carriedUnsignedBytes < MiB, { timeoutMs: 20_000, what: 'the exit to let the lost bytes off' })
    expect((await pending()).forgivenBytes).toBeGreaterThan(0)
    const full = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.1:${target.port}/blob`])
    expect(full.code).toBe(0)
    expect(sha256(full.stdout)).toBe(target.blobSha256)
  }, 90_000)
})
