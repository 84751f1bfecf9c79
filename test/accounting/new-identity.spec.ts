import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createSparebandNode } from '../../src/index.ts'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { curl } from '../utils/network.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { TargetServer } from '../utils/target-server.ts'

const MiB = 1024 * 1024

/**
 * A fixed identity whose 20-bit proof of work is nonce 1,686,628: the solver
 * tries nonces from 0, so this one takes 1.7 million hashes (1.5-4 s), every
 * time. A random new key may solve in a few milliseconds and test nothing.
 */
const SLOW_POW_KEY = 'CAESQHqIO6EA5i21j2jcCawBJm93CrBLagxEvpx5e1qD5lzKnV26XqHaaJdHS5MRFpoIv9xsBSYL1vI2MhQNp060SN8='
const SLOW_POW_NONCE = 1_686_628n

/**
 * A brand-new identity solves its proof of work in the background (about a
 * second at 20 bits). Until an exit has that proof, it counts no allowance
 * for the consumer, so the consumer's first receipt would put it below the
 * exit's credit limit and its next tunnel would be refused. Tunnels wait for
 * the proof instead: nothing a new member asks for is refused for credit.
 * Real nodes over TCP on loopback, in this process.
 */
describe('a brand-new identity', () => {
  let target: TargetServer
  let exit: SparebandNode
  let consumer: SparebandNode

  beforeAll(async () => {
    target = await startTargetServer(2 * MiB)
    const base = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 } }
    exit = await createSparebandNode({
      dataDir: await tempDir('sb-newid-'),
      config: { ...base, region: 'de', network: { local_testnet: true }, accounting: { pow_difficulty: 8 }, exit: { allow_private_targets: true, allowed_ports: [target.port] } }
    })
    await exit.start()
    const consumerDir = await tempDir('sb-newid-')
    await writeFile(join(consumerDir, 'identity.key'), Buffer.from(SLOW_POW_KEY, 'base64'), { mode: 0o600 })
    consumer = await createSparebandNode({
      dataDir: consumerDir,
      // the exit asks for 8 bits; this consumer proves 20, which takes it long enough to matter
      config: { ...base, network: { local_testnet: true, bootstrap: exit.status().addresses }, accounting: { pow_difficulty: 20 }, exit: { enabled: false } }
    })
    await consumer.start()
    await waitFor(async () => (await consumer.peers()).some(p => p.agent?.includes('exit')), { what: 'identify', intervalMs: 10 })
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    await target?.close()
  })

  it('is never refused for credit while its proof of work is being solved', async () => {
    const accounting = (n: SparebandNode): any => (n.status() as any).accounting
    // the case under test: traffic starts before the proof exists
    expect(accounting(consumer).proofOfWork.solved).toBe(false)
    const http = (consumer.status() as any).proxy.httpPort
    for (let i = 0; i < 8; i++) {
      // 2 MiB each: every download is signed for, so without the allowance the balance goes negative at once
      const r = await curl(['-f', '--proxy', `http://127.0.0.1:${http}`, `http://127.0.0.1:${target.port}/blob`])
      expect(r.stderr).toBe('')
      expect(r.code).toBe(0)
      expect(sha256(r.stdout)).toBe(target.blobSha256)
    }
    expect(accounting(consumer).proofOfWork.solved).toBe(true)
    // the exit holds the proof, so it counts the allowance, and saw no refusal
    expect((exit.status() as any).exit.deniedByStatus.INSUFFICIENT_CREDIT ?? 0).toBe(0)
    await waitFor(() => Number(accounting(consumer).bytesUsed) >= 16 * MiB, { what: 'the receipts of 16 MiB' })
    const ledger = (exit as any).part('accounting').core.ledger
    expect(ledger.pow(consumer.libp2p.peerId)).toEqual({ nonce: SLOW_POW_NONCE, difficulty: 20 })
    const seen = await waitFor(() => {
      const b = ledger.balance(consumer.libp2p.peerId)
      return b.allowanceMicro > 0n ? b : undefined
    }, { what: "the exit to count the consumer's allowance" })
    expect(seen.balanceMicro).toBe(seen.allowanceMicro - seen.spentMicro)
    expect(seen.spentMicro).toBeGreaterThan(0n)
  })
})
