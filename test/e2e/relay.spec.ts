import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import { curl, spawnNode } from '../utils/network.ts'
import { waitFor } from '../utils/cli.ts'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

/**
 * An exit that can only be reached through a circuit relay: it listens on
 * nothing but `<relay>/p2p-circuit`, and the consumer listens on nothing at
 * all, so no direct connection (or hole punch) between them is possible.
 */
describe('tunnels to an exit behind a relay', () => {
  let target: TargetServer
  let relay: SpawnedNode
  let exit: SpawnedNode
  let consumer: SpawnedNode

  beforeAll(async () => {
    target = await startTargetServer()
    relay = await spawnNode({ region: 'nl', args: ['--no-supply'] })
    const relayAddr = relay.addresses[0]
    exit = await spawnNode({ region: 'de', listen: [`${relayAddr}/p2p-circuit`], args: ['--allow-private-targets', '--exit-ports', String(target.port)] })
    await waitFor(async () => (await exit.status()).addresses.some((a: string) => a.includes('/p2p-circuit')), { what: 'a relay reservation' })
    consumer = await spawnNode({ region: 'jp', config: 'listen = []\n', listen: [], args: ['--no-supply', '--bootstrap', relayAddr, '--bootstrap', `${relayAddr}/p2p-circuit/p2p/${exit.peerId}`] })
  })
  afterAll(async () => {
    await Promise.all([relay, exit, consumer].map(async n => n?.proc.kill()))
    await target?.close()
  })

  it('the only connection to the exit is relayed, and 64 MB arrive with the same SHA-256 (over the 128 KiB / 2 min js-libp2p defaults)', async () => {
    const peer = await waitFor(async () => {
      const peers = await consumer.proc.peers()
      return peers.find((p: any) => p.peerId === exit.peerId && p.agent != null)
    }, { what: 'the consumer to identify the exit through the relay' })
    expect(peer.limited).toBe(true)
    expect(peer.addresses.every((a: string) => a.includes('/p2p-circuit'))).toBe(true)

    const r = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, `http://127.0.0.1:${target.port}/blob`], 120_000)
    expect(r.stderr).toBe('')
    expect(sha256(r.stdout)).toBe(target.blobSha256)
    const plain = await curl(['--proxy', `http://127.0.0.1:${consumer.httpPort}`, `http://127.0.0.1:${target.port}/blob`], 120_000)
    expect(sha256(plain.stdout)).toBe(target.blobSha256)

    const s = await exit.status()
    expect(s.exit.bytesOut).toBeGreaterThanOrEqual(2 * target.blob.byteLength)
    // still relayed: the tunnel did not quietly go direct
    const after = (await consumer.proc.peers()).find((p: any) => p.peerId === exit.peerId)
    expect(after.limited).toBe(true)
  })

  it('more tunnels keep to the one relayed connection, most on warm streams', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await curl(['--socks5-hostname', `127.0.0.1:${consumer.socksPort}`, `http://127.0.0.1:${target.port}/slice/100000`])
      expect(r.stderr).toBe('')
      expect(sha256(r.stdout)).toBe(sha256(target.blob.subarray(0, 100000)))
    }
    const peer = (await consumer.proc.peers()).find((p: any) => p.peerId === exit.peerId)
    // one entry per open connection
    expect(peer.addresses).toHaveLength(1)
    expect(peer.limited).toBe(true)
    const proxy = (await consumer.status()).proxy
    expect(proxy.warmStreams.hits).toBeGreaterThanOrEqual(4)
  })
})
