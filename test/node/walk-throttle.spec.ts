/**
 * The random walk behind the relay search, paced when its queries come
 * back at once: the pacing rules with an injected clock, then a real node
 * whose only peer (its relay) went away, which used to start thousands of
 * queries a second.
 */

import { describe, it, expect, afterEach } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { FAST_QUERY_MS, MAX_WAIT_MS, WalkThrottle, walkThrottleOf } from '../../src/node/walk-throttle.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { PeerInfo } from '@libp2p/interface'

describe('WalkThrottle', () => {
  /** A throttle on a clock only the test moves; each query "takes" `took` ms, each wait is recorded and skipped. */
  function paced (): { run: (took: number) => Promise<void>, waits: number[], advance: (ms: number) => void } {
    let clock = 1_000_000
    const waits: number[] = []
    const throttle = new WalkThrottle({ now: () => clock, sleep: async ms => { waits.push(ms); clock += ms } })
    let took = 0
    const query = throttle.wrap(async function * (): AsyncGenerator<PeerInfo> { clock += took })
    return {
      waits,
      advance: ms => { clock += ms },
      run: async (ms: number) => {
        took = ms
        for await (const _ of query(new Uint8Array(32))) { /* nothing found */ }
      }
    }
  }

  it('waits 1 s after a query that came back at once, then twice as long each time, up to a minute', async () => {
    const p = paced()
    for (let i = 0; i < 10; i++) await p.run(0)
    expect(p.waits).toEqual([1000, 2000, 4000, 8000, 16000, 32000, MAX_WAIT_MS, MAX_WAIT_MS, MAX_WAIT_MS])
  })

  it('starts at once after a query that took a real lookup, and after a quiet spell', async () => {
    const p = paced()
    await p.run(0)
    await p.run(0)
    expect(p.waits).toEqual([1000])
    await p.run(FAST_QUERY_MS + 500)
    await p.run(0)
    // the slow one waited for the fast ones before it, the next one did not wait
    expect(p.waits).toEqual([1000, 2000])
    await p.run(0)
    expect(p.waits).toEqual([1000, 2000, 1000])
    p.advance(10 * MAX_WAIT_MS)
    await p.run(0)
    expect(p.waits).toEqual([1000, 2000, 1000])
  })
})

describe('a node whose only peer, its relay, went away', () => {
  const nodes: SparebandNode[] = []
  afterEach(async () => { for (const n of nodes.splice(0)) await n.stop() })

  it('does not start a random-walk query after another as fast as they fail', async () => {
    const base = { api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 1 } }
    const relay = await createSparebandNode({ dataDir: await tempDir('sb-walk-'), config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0'], network: { local_testnet: true } } })
    nodes.push(relay)
    await relay.start()
    // the relay search is in every node's default listen addresses
    const node = await createSparebandNode({ dataDir: await tempDir('sb-walk-'), config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'], network: { local_testnet: true, bootstrap: relay.status().addresses } } })
    nodes.push(node)
    await node.start()
    await waitFor(() => node.libp2p.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit')), { what: 'a reservation on the relay' })
    expect(walkThrottleOf(node.libp2p)).toBeDefined()

    // count what the walk asks for from outside the throttle: every query it starts
    const walk = (node.libp2p as any).components.randomWalk
    const routing = walk.peerRouting
    let queries = 0
    walk.peerRouting = { getClosestPeers: (key: Uint8Array, options: any) => { queries++; return routing.getClosestPeers(key, options) } }
    await relay.stop()
    nodes.splice(nodes.indexOf(relay), 1)
    await new Promise(resolve => setTimeout(resolve, 6000))
    // paced: 1 + 2 + 4 s of waits fit in 6 s; unpaced, thousands of queries
    expect(queries).toBeGreaterThanOrEqual(1)
    expect(queries).toBeLessThanOrEqual(5)
  }, 30_000)
})
