/**
 * A consumer that signs every receipt but runs out of credit mid-download.
 * A ledger credits an exit only what the consumer's balance can pay, so an
 * exit that went on carrying would carry for nothing: it holds the
 * consumer's tunnels once the balance above its credit limit is spent, as
 * it does for unsigned bytes, closes them if no credit comes, and refuses
 * new ones. Real nodes over TCP on
 * loopback, in this process, and curl through the consumer's HTTP proxy.
 */

import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createSparebandNode } from '../../src/index.ts'
import { startTargetServer } from '../utils/target-server.ts'
import { curl } from '../utils/network.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { TargetServer } from '../utils/target-server.ts'

const MiB = 1024 * 1024
/** What the exit grants a proven identity: 0.008 credits at 1 credit per 10^9 bytes pays for 8,000,000 bytes. */
const ALLOWANCE_CREDITS = 0.008
const PAID_BYTES = 8_000_000

describe('a consumer that runs out of credit', () => {
  let target: TargetServer
  let exit: SparebandNode
  let consumer: SparebandNode

  const base = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 } }
  const consumers: SparebandNode[] = []

  /** A consumer of its own (so an allowance of its own) that has identified the exit and proven its identity. */
  async function newConsumer (): Promise<SparebandNode> {
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-credit-'),
      config: { ...base, network: { local_testnet: true, bootstrap: exit.status().addresses }, accounting: { pow_difficulty: 8 }, exit: { enabled: false } }
    })
    consumers.push(node)
    await node.start()
    await waitFor(async () => (await node.peers()).some(p => p.agent?.includes('exit')), { what: 'identify', intervalMs: 10 })
    await waitFor(() => (node.status() as any).accounting.proofOfWork.solved, { what: "the consumer's proof of work" })
    return node
  }

  beforeAll(async () => {
    target = await startTargetServer(32 * MiB)
    exit = await createSparebandNode({
      dataDir: await tempDir('sb-credit-'),
      config: { ...base, region: 'de', network: { local_testnet: true }, accounting: { pow_difficulty: 8, allowance: ALLOWANCE_CREDITS }, exit: { allow_private_targets: true, allowed_ports: [target.port] } }
    })
    await exit.start()
    consumer = await newConsumer()
  })
  afterAll(async () => {
    for (const c of consumers) await c.stop()
    await exit?.stop()
    await target?.close()
  })

  it('is carried about what its balance pays for, not the whole download, then cut off and refused', async () => {
    const refused: any[] = []
    exit.addEventListener('node:refused', e => refused.push(e.detail))
    const http = (consumer.status() as any).proxy.httpPort
    // held once the allowance is spent, and the tunnel closed 10 s later: curl sees the
    // connection end short of the 32 MiB, well before the exit's 300 s idle timeout
    const r = await curl(['--proxy', `http://127.0.0.1:${http}`, `http://127.0.0.1:${target.port}/blob`], 40_000)
    expect(r.code).not.toBe(0)
    expect(r.stderr).not.toMatch(/timed out/i)
    expect(r.ms).toBeLessThan(30_000)
    const body = r.stdout.byteLength
    expect(body).toBeGreaterThan(PAID_BYTES - 2 * MiB)
    // what the balance paid for, plus what was under way when the exit saw it spent
    expect(body).toBeLessThan(PAID_BYTES + 2 * MiB)

    const ledger = (exit as any).part('accounting').core.ledger
    // the consumer signed for what it got (its last receipt within 5 s)
    const spent = await waitFor(() => {
      const b = ledger.balance(consumer.libp2p.peerId)
      return b.bytesUsed >= BigInt(body) - BigInt(MiB) ? b : undefined
    }, { what: "the consumer's last receipts" })
    const mine = ledger.balance()
    // the exit was paid the allowance, and carried little past it
    expect(mine.earnedMicro).toBe(8_000n)
    expect(mine.unpaidMicro).toBeLessThan(2_100n) // 2 MiB at 1 credit per 10^9 bytes
    expect(spent.balanceMicro).toBeLessThanOrEqual(0n)
    expect((exit.status() as any).accounting.pending.holds).toBeGreaterThanOrEqual(1)
    // the exit's operator is told why the download was cut (its client saw a reset), before the refusal of the next
    expect(refused[0]).toMatchObject({ kind: 'tunnel', peer: consumer.peerId.toString(), about: 'INSUFFICIENT_CREDIT', reason: 'closed its 1 open tunnel: the consumer is out of credit' })


    const next = await curl(['-i', '--proxy', `http://127.0.0.1:${http}`, `http://127.0.0.1:${target.port}/hello`])
    expect(next.stdout.toString()).toMatch(/^HTTP\/1\.1 402 Payment Required/)
  })

  it('is held at what its balance pays for in an upload too, and cut off, though it signs its uploads before they arrive', async () => {
    const uploader = await newConsumer()
    const file = join(await tempDir('sb-credit-upload-'), 'upload.bin')
    await writeFile(file, randomBytes(32 * MiB))
    const ledger = (exit as any).part('accounting').core.ledger
    const earnedBefore: bigint = ledger.balance().earnedMicro
    const before = target.uploaded
    const http = (uploader.status() as any).proxy.httpPort
    const r = await curl(['--proxy', `http://127.0.0.1:${http}`, '--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream', `http://127.0.0.1:${target.port}/upload`], 40_000)
    // the upload never completes: no answer from the target, and no timeout either (cut, not stalled)
    expect(r.code).not.toBe(0)
    expect(r.stderr).not.toMatch(/timed out/i)
    expect(r.ms).toBeLessThan(30_000)
    const got = target.uploaded - before
    expect(got).toBeGreaterThan(PAID_BYTES - 2 * MiB)
    expect(got).toBeLessThan(PAID_BYTES + 2 * MiB)

    // the uploader signed for what it sent (its last receipt within 5 s), and the exit was paid its whole allowance
    const spent = await waitFor(() => {
      const b = ledger.balance(uploader.libp2p.peerId)
      return b.bytesUsed >= BigInt(got) - BigInt(MiB) ? b : undefined
    }, { what: "the uploader's last receipts" })
    expect(spent.balanceMicro).toBeLessThanOrEqual(0n)
    expect(ledger.balance().earnedMicro - earnedBefore).toBe(8_000n)
    const next = await curl(['-i', '--proxy', `http://127.0.0.1:${http}`, `http://127.0.0.1:${target.port}/hello`])
    expect(next.stdout.toString()).toMatch(/^HTTP\/1\.1 402 Payment Required/)
  })
})
