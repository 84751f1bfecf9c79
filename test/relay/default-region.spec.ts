/**
 * A proxy client that names no region goes out through the consumer's
 * `proxy.default_region`; one that names a region goes there. And an exit
 * charges its own `exit.price_per_gb`. Real nodes on loopback in this
 * process, real curl through the consumer's HTTP proxy.
 */

import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { curl } from '../utils/network.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandNode, SparebandConfigInput } from '../../src/index.ts'
import type { TargetServer } from '../utils/target-server.ts'

const base = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8 } }

describe("the consumer's default region, and an exit's price", () => {
  let target: TargetServer
  const exits: Record<string, SparebandNode> = {}
  let consumer: SparebandNode

  async function node (config: SparebandConfigInput): Promise<SparebandNode> {
    const n = await createSparebandNode({ dataDir: await tempDir('sb-default-region-'), config: { ...base, ...config } as SparebandConfigInput })
    await n.start()
    return n
  }

  beforeAll(async () => {
    target = await startTargetServer(1024 * 1024)
    for (const [region, price] of [['de', 1], ['us', 3]] as const) {
      exits[region] = await node({ region, network: { local_testnet: true }, exit: { allow_private_targets: true, allowed_ports: [target.port], price_per_gb: price } })
    }
    consumer = await node({
      network: { local_testnet: true, bootstrap: [...exits.de.status().addresses, ...exits.us.status().addresses] },
      exit: { enabled: false },
      proxy: { ...base.proxy, default_region: 'us' }
    } as SparebandConfigInput)
    await waitFor(async () => (await consumer.peers()).filter(p => p.agent?.includes('exit')).length === 2, { what: 'both exits identified' })
    await waitFor(() => (consumer.status() as any).accounting.proofOfWork.solved === true, { what: "the consumer's proof of work" })
  })
  afterAll(async () => {
    await consumer?.stop()
    for (const e of Object.values(exits)) await e.stop()
    await target?.close()
  })

  const get = async (user?: string): Promise<{ exit: string, body: Buffer }> => {
    const http = (consumer.status() as any).proxy.httpPort
    const r = await curl(['-i', '--proxy', `http://127.0.0.1:${http}`, ...(user != null ? ['--proxy-user', `${user}:`] : []), `http://127.0.0.1:${target.port}/blob`])
    expect(r.code).toBe(0)
    const text = r.stdout
    const end = text.indexOf('\r\n\r\n')
    const head = text.subarray(0, end).toString()
    return { exit: /^x-spareband-exit: (\S+)$/im.exec(head)?.[1] ?? '', body: text.subarray(end + 4) }
  }

  it('a client that names no region goes through an exit of the default region, every time', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await get()
      expect(r.exit).toBe(exits.us.peerId.toString())
      expect(sha256(r.body)).toBe(target.blobSha256)
    }
  })

  it('a client that names a region goes there all the same', async () => {
    const r = await get('region-de')
    expect(r.exit).toBe(exits.de.peerId.toString())
    expect(sha256(r.body)).toBe(target.blobSha256)
  })

  // the consumer met both exits through identify (bootstrap), before any capacity ad:
  // it learns us's price from us itself (on the old code every receipt to us was refused)
  it("each exit charges its own price: the receipts carry it, and the credits follow (3 credits per GB at us, 1 at de)", async () => {
    const ledgerOf = (n: SparebandNode): any => (n as any).part('accounting').core.ledger
    const price = (region: string): bigint[] => ledgerOf(exits[region]).receipts().map((r: any) => r.receipt.pricePerGb)
    await waitFor(() => price('us').length > 0 && price('de').length > 0, { what: 'receipts at both exits' })
    expect(new Set(price('us'))).toEqual(new Set([3_000_000n]))
    expect(new Set(price('de'))).toEqual(new Set([1_000_000n]))
    // what the consumer spent at each exit is what that exit carried, at its price (micro-credits, rounded up per receipt)
    for (const [region, perGb] of [['us', 3n], ['de', 1n]] as const) {
      const b = await waitFor(() => {
        const balance = ledgerOf(exits[region]).balance()
        return balance.bytesCarried >= 1024n * 1024n && balance
      }, { what: `${region}'s receipts for what it carried` })
      const expected = b.bytesCarried * perGb * 1_000_000n / 1_000_000_000n
      expect(b.earnedMicro).toBeGreaterThanOrEqual(expected)
      expect(b.earnedMicro).toBeLessThanOrEqual(expected + 10n)
    }
  })
})
