/**
 * Reputation over a real network in this process: a consumer downloads
 * through an exit, reports what it saw on `spareband/reputation/1`, and a
 * third node that took no part scores the exit from that report, weighted
 * by the receipts it heard of over gossip.
 */

import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { request } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import { startExitAndConsumer } from '../utils/in-process.ts'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { encodeReport, signReport } from '../../src/accounting/reputation.ts'
import { INVALID_RECEIPT_WEIGHT } from '../../src/node/gossip-scoring.ts'
import type { SparebandNode, SparebandConfigInput } from '../../src/index.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { TargetServer } from '../utils/target-server.ts'
import type { AccountingPart } from '../../src/node/accounting-part.ts'
import type { RoutingPart } from '../../src/node/routing-part.ts'

const MiB = 1024 * 1024
const REPUTATION_TOPIC = 'spareband/reputation/1'

describe('reputation gossip between real nodes', () => {
  let exit: SparebandNode, consumer: SparebandNode, observer: SparebandNode
  let target: TargetServer

  beforeAll(async () => {
    // 16 MiB paid at 1 credit/GB is more than the 10 MB a full-weight reporter must have paid
    target = await startTargetServer(16 * MiB)
    // the exit gossips a session's receipts within a second; nobody reports on a timer (the test says when)
    ;({ exit, consumer } = await startExitAndConsumer([target.port], { accounting: { publish_interval_seconds: 1, reputation_interval_seconds: 0 }, dataDirPrefix: 'sb-reputation-' }))
    observer = await createSparebandNode({
      dataDir: await tempDir('sb-reputation-'),
      config: {
        listen: ['/ip4/127.0.0.1/tcp/0'],
        api: { port: 0 },
        proxy: { socks_port: 0, http_port: 0 },
        accounting: { pow_difficulty: 8, reputation_interval_seconds: 0 },
        network: { local_testnet: true, bootstrap: exit.status().addresses },
        exit: { enabled: false }
      } as SparebandConfigInput
    })
    await observer.start()
    await waitFor(async () => (await exit.status() as any).accounting.reputation != null && (exit.status() as any).accounting.gossip.subscribers >= 2, { what: 'the consumer and the observer on the receipt topic' })
  })
  afterAll(async () => {
    await observer?.stop()
    await consumer?.stop()
    await exit?.stop()
    await target?.close()
  })

  const accounting = (node: SparebandNode): AccountingPart => node.part<AccountingPart>('accounting')!
  const exitBytes = (): Uint8Array => exit.peerId.toMultihash().bytes
  const consumerBytes = (): Uint8Array => consumer.peerId.toMultihash().bytes

  async function download (): Promise<string> {
    const socket = await consumer.connect('127.0.0.1', target.port, { region: 'de' })
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: target.port, path: '/blob', createConnection: () => socket }, res => {
        const parts: Buffer[] = []
        res.on('data', (c: Buffer) => parts.push(c))
        res.on('end', () => { resolve(sha256(Buffer.concat(parts))) })
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    })
  }

  it('a node that took no part scores the exit from the consumer\'s report, once it knows the consumer paid', async () => {
    expect(accounting(observer).book.score(exitBytes())).toBeUndefined()
    expect(await download()).toBe(target.blobSha256)
    expect(await download()).toBe(target.blobSha256)

    // the observer learns through receipt gossip what the consumer paid the exit
    await waitFor(() => accounting(observer).core.ledger.paidBetween(consumerBytes(), exitBytes()) >= 10_000n, { timeoutMs: 20_000, what: 'the receipts at the observer' })

    expect(await accounting(consumer).reputation.publishDue()).toBe(1)
    const score = await waitFor(() => accounting(observer).book.score(exitBytes()), { timeoutMs: 10_000, what: 'the report at the observer' })
    // one full-weight reporter, two tunnels, none failed: (1 + 1) / (2 + 1)
    expect(score).toBeCloseTo(2 / 3, 6)
    const s = (observer.status() as any).accounting.reputation
    expect(s).toMatchObject({ accepted: 1, rejected: 0, held: 1 })
    expect((consumer.status() as any).accounting.reputation.published).toBe(1)
    // nothing new since: nothing to report
    expect(await accounting(consumer).reputation.publishDue()).toBe(0)

    // the exit holds the report on itself too (the consumer paid it): its operator sees it in status and /metrics
    await waitFor(() => (exit.status() as any).accounting.reputation.own.score != null, { what: 'the report at the exit' })
    expect((exit.status() as any).accounting.reputation.own.reporters).toBe(1)
    expect((exit.status() as any).accounting.reputation.own.score).toBeCloseTo(2 / 3, 6)
    expect((consumer.status() as any).accounting.reputation.own).toEqual({ score: null, reporters: 0 })
    const api = JSON.parse(await readFile(join(exit.dataDir, 'api.json'), 'utf8'))
    const token = (await readFile(join(exit.dataDir, 'api-token'), 'utf8')).trim()
    const metrics = await (await fetch(`${api.url as string}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text()
    expect(metrics).toMatch(/^spareband_reputation 0\.666666/m)
    expect(metrics).toMatch(/^spareband_reputation_reporters 1$/m)
    expect(metrics).toMatch(/^spareband_reputation_gossip_total\{result="accepted"\} 1$/m)

    // and the observer's selector ranks with it: providers show it
    const rows = await observer.part<RoutingPart>('routing')!.selector.providers('de')
    expect(rows.find(r => r.peerId === exit.peerId.toString())?.reputation).toBeCloseTo(0.667, 3)
  })

  it('a peer that gossips a forged report is rejected and loses gossip score, as for a forged receipt', async () => {
    const pubsub = (n: SparebandNode): GossipSub => n.libp2p.services.pubsub as GossipSub
    // getScore is on gossipsub's class, not on the interface it is typed as
    const scoreOf = (n: SparebandNode, peer: SparebandNode): number => (pubsub(n) as unknown as { getScore: (peer: string) => number }).getScore(peer.peerId.toString())
    await waitFor(() => pubsub(observer).getSubscribers(REPUTATION_TOPIC).some(p => p.equals(exit.peerId)), { what: 'the exit on the reputation topic, as the observer sees it' })
    const before = { ...(exit.status() as any).accounting.reputation }
    const forged = encodeReport(await signReport({
      reporter: observer.peerId.toMultihash().bytes,
      subject: consumer.peerId.toMultihash().bytes,
      issuedAt: BigInt(Date.now()),
      windowSeconds: 60,
      successes: 0,
      failures: 10
    }, observer.identity.privateKey))
    forged[forged.length - 1] ^= 0x01
    // gossipsub does not validate a node's own messages: the observer publishes it as is
    await pubsub(observer).publish(REPUTATION_TOPIC, forged)
    await waitFor(() => (exit.status() as any).accounting.reputation.rejected === before.rejected + 1, { what: 'the forged report rejected at the exit' })
    expect((exit.status() as any).accounting.reputation.accepted).toBe(before.accepted)
    const score = await waitFor(() => { const s = scoreOf(exit, observer); return s < 0 ? s : undefined }, { what: 'the observer\'s score at the exit to drop' }) as number
    expect(score).toBeLessThan(INVALID_RECEIPT_WEIGHT + 1.5)
  })

  it('a restarted node still holds the reports it held, and ranks the exit by them at once', async () => {
    const dataDir = observer.dataDir
    const config = observer.config
    await observer.stop()
    observer = await createSparebandNode({ dataDir, config: { ...config, listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 } } as SparebandConfigInput })
    await observer.start()
    // before any report could come again (nobody reports on a timer here)
    expect((observer.status() as any).accounting.reputation).toMatchObject({ accepted: 0, held: 1 })
    expect(accounting(observer).book.score(exitBytes())).toBeCloseTo(2 / 3, 6)
  })
})
