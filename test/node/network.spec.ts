import { describe, it, expect, afterAll } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'

/** Three library nodes on TCP loopback; 2 and 3 know only node 1. */
describe('three nodes form a DHT on TCP loopback', () => {
  const nodes: SparebandNode[] = []
  afterAll(async () => { await Promise.all(nodes.map(async n => n.stop())) })

  const make = async (bootstrap: string[]): Promise<SparebandNode> => {
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-net-'),
      config: {
        region: 'de',
        listen: ['/ip4/127.0.0.1/tcp/0'],
        api: { port: 0 },
        proxy: { socks_port: 0, http_port: 0 },
        network: { bootstrap, local_testnet: true }
      }
    })
    nodes.push(node)
    await node.start()
    return node
  }

  it('every node sees at least two peers, found through the DHT', async () => {
    const first = await make([])
    const boot = first.status().addresses
    expect(boot.length).toBeGreaterThan(0)
    const second = await make(boot)
    const third = await make(boot)
    const events: string[] = []
    third.addEventListener('peer:connect', e => events.push(e.detail.peerId))

    await waitFor(async () => {
      for (const n of nodes) if ((await n.peers()).length < 2) return false
      return true
    }, { timeoutMs: 30_000, what: 'each node to have 2 peers' })

    // 2 and 3 were only told about 1: they met through the DHT
    const peersOfThird = (await third.peers()).map(p => p.peerId)
    expect(peersOfThird).toContain(second.peerId.toString())
    expect(peersOfThird).toContain(first.peerId.toString())
    for (const n of nodes) {
      const s = n.status()
      expect(s.peerId).toBe(n.peerId.toString())
      expect(s.connections).toBeGreaterThanOrEqual(2)
      expect(s.dht.mode).toBe('server')
      expect(s.dht.routingTableSize).toBeGreaterThanOrEqual(1)
      expect(JSON.parse(JSON.stringify(s)).peerId).toBe(s.peerId) // embedding apps log it as JSON
    }
    expect(events).toContain(second.peerId.toString())
    const p = (await third.peers()).find(p => p.peerId === first.peerId.toString())!
    expect(p.agent).toBe('spareband/0.1.0 (region=de; exit)')
    expect(p.region).toBe('de')
    expect(p.addresses[0]).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+/)
  })

  it('is running by the time its control API announces itself, so a client that finds api.json gets a status', async () => {
    const n = await createSparebandNode({ dataDir: await tempDir('sb-net-'), config: { listen: [], api: { port: 0 } } })
    nodes.push(n)
    const api = (n as any).api
    const startApi = api.start.bind(api)
    let statusWhenAnnounced: unknown
    // api.start() writes api.json: whatever the node answers then, a client that read the file could get
    api.start = async () => {
      await startApi()
      try {
        statusWhenAnnounced = n.status().peerId
      } catch (err) {
        statusWhenAnnounced = err
      }
    }
    await n.start()
    expect(statusWhenAnnounced).toBe(n.peerId.toString())
  })

  it('status() of a stopped node throws NotStartedError', async () => {
    const n = await createSparebandNode({ dataDir: await tempDir('sb-net-'), config: { listen: [] }, controlApi: false })
    expect(() => n.status()).toThrow(expect.objectContaining({ name: 'NotStartedError' }))
  })
})
