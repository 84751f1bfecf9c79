import { describe, it, expect, afterEach } from 'vitest'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createSparebandNode } from '../../src/index.ts'
import { Backoff, peerKeeper } from '../../src/node/peer-keeper.ts'
import { freePort, tempDir, waitFor } from '../utils/cli.ts'
import type { AddressInfo } from 'node:net'

describe('Backoff', () => {
  it('doubles from the first wait up to the cap, each wait drawn from half of it to all of it', () => {
    const waits = (random: number): number[] => {
      const b = new Backoff(1000, 60_000, () => random)
      return Array.from({ length: 9 }, () => b.next())
    }
    expect(waits(1)).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000])
    expect(waits(0)).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000])
    const b = new Backoff(1000, 60_000, () => 1)
    b.next()
    b.next()
    b.reset()
    expect(b.next()).toBe(1000)
  })
})

describe('the peer keeper', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
  })

  /** A peer's address at a port that takes each TCP connection and drops it: every dial fails, and is counted (when, in `dials`). */
  async function droppingPeer (): Promise<{ dials: number[], addr: string }> {
    const dials: number[] = []
    const server = createServer(socket => { dials.push(performance.now()); socket.destroy() })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => { await new Promise(resolve => server.close(resolve)) })
    const absent = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    return { dials, addr: `/ip4/127.0.0.1/tcp/${(server.address() as AddressInfo).port}/p2p/${absent}` }
  }

  it('redials a bootstrap peer that does not answer with backoff, says so once, and stops redialling with the node', async () => {
    const { dials, addr } = await droppingPeer()
    const node = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        keeper: peerKeeper({ bootstrap: [addr], minDelayMs: 100, maxDelayMs: 400, random: () => 1 })
      }
    })
    cleanups.push(async () => node.stop())
    const lost: string[] = []
    node.services.keeper.addEventListener('keeper:lost', e => lost.push(`${e.detail.kind}: ${e.detail.reason}`))

    await waitFor(() => dials.length >= 6, { intervalMs: 20, what: '6 redials' })
    const gaps = dials.slice(1).map((t, i) => t - dials[i])
    // 100 ms (after start), then 200, 400, and the 400 ms cap
    for (const [i, want] of [200, 400, 400, 400, 400].entries()) {
      expect(gaps[i], `gap ${i}`).toBeGreaterThanOrEqual(want - 10)
      expect(gaps[i], `gap ${i}`).toBeLessThan(want + 300)
    }
    expect(lost).toEqual(['bootstrap: no peer'])

    await node.stop()
    const afterStop = dials.length
    await sleep(1000)
    expect(dials.length).toBe(afterStop)
  })

  it('waits out a pause of the address (a relay found gone, gone-peers.ts) instead of failing at once: no attempts, no longer backoff, dialled right after it', async () => {
    const { dials, addr } = await droppingPeer()
    // the address is paused for its first 1.5 s
    const started = performance.now()
    const pausedUntil = started + 1500
    const asked: string[] = []
    const node = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        keeper: peerKeeper({ bootstrap: [addr], minDelayMs: 100, maxDelayMs: 400, random: () => 1, pausedFor: a => { asked.push(a.toString()); return Math.max(0, pausedUntil - performance.now()) } })
      }
    })
    cleanups.push(async () => node.stop())
    const lost: string[] = []
    node.services.keeper.addEventListener('keeper:lost', e => lost.push(e.detail.reason))
    await waitFor(() => dials.length >= 2, { intervalMs: 20, what: 'two dials after the pause' })
    expect(asked[0]).toBe(addr)
    // none during the pause; the first right after it, not at the 400 ms backoff the refused ones would have grown to
    expect(dials[0] - pausedUntil).toBeGreaterThanOrEqual(0)
    expect(dials[0] - pausedUntil).toBeLessThan(300)
    // the backoff starts afresh: 100 ms, then 200
    expect(dials[1] - dials[0]).toBeLessThan(200 + 300)
    expect(lost).toEqual(['no peer'])
  })

  it('skips itself among the bootstrap peers: a network definition lists its bootstrap nodes, and they load it too', async () => {
    const privateKey = await generateKeyPair('Ed25519')
    const self = peerIdFromPrivateKey(privateKey)
    const node = await createLibp2p({
      privateKey,
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { keeper: peerKeeper({ bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${self}`], minDelayMs: 50, maxDelayMs: 100 }) }
    })
    cleanups.push(async () => node.stop())
    const lost: unknown[] = []
    node.services.keeper.addEventListener('keeper:lost', e => lost.push(e.detail))
    await sleep(500)
    expect(lost).toEqual([])
  })

  // (its DHT's random walk dials peers it knew; the keeper itself dials only the bootstrap peers)
  it('a node left with no peer while its bootstrap peer is down dials other peers it knew, and is back in the network', async () => {
    const config = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { enabled: false }, exit: { enabled: false }, network: { local_testnet: true } }
    const boot = await createSparebandNode({ dataDir: await tempDir('sb-keep-'), config })
    // a peer it met, with no bootstrap list of its own (so no keeper that would dial back)
    const met = await createSparebandNode({ dataDir: await tempDir('sb-keep-'), config })
    cleanups.push(async () => boot.stop(), async () => met.stop())
    await boot.start()
    await met.start()
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-keep-'),
      config: { ...config, network: { local_testnet: true, bootstrap: [boot.status().addresses[0]], redial_max_seconds: 1 } }
    })
    cleanups.push(async () => node.stop())
    await node.start()
    await node.libp2p.dial(multiaddr(met.status().addresses[0]))
    await waitFor(() => node.libp2p.getConnections(boot.peerId).length > 0, { what: 'the bootstrap connection' })
    // the bootstrap node goes, and the other peer hangs up: no peer at all
    await boot.stop()
    await met.libp2p.hangUp(node.peerId)
    await waitFor(() => node.libp2p.getConnections().length === 0 || node.libp2p.getConnections(met.peerId).length > 0, { what: 'the node alone' })
    await waitFor(() => node.libp2p.getConnections(met.peerId).length > 0, { timeoutMs: 8000, what: 'a connection to the peer it knew, dialled by the node' })
    expect(node.libp2p.getConnections(met.peerId)[0].direction).toBe('outbound')
  })

  it('a node whose only bootstrap peer was down at start joins it once it is up', async () => {
    const port = await freePort()
    const boot = await createSparebandNode({ dataDir: await tempDir('sb-keep-'), config: { listen: [`/ip4/127.0.0.1/tcp/${port}`], api: { port: 0 }, proxy: { enabled: false }, network: { local_testnet: true } } })
    cleanups.push(async () => boot.stop())
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-keep-'),
      config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { enabled: false }, network: { local_testnet: true, bootstrap: [`/ip4/127.0.0.1/tcp/${port}/p2p/${boot.peerId}`], redial_max_seconds: 1 } }
    })
    cleanups.push(async () => node.stop())
    const notices: string[] = []
    node.addEventListener('keeper:lost', e => notices.push(`lost: ${e.detail.reason}`))
    node.addEventListener('keeper:back', e => notices.push(`back: ${e.detail.kind}`))
    await node.start()
    await waitFor(() => notices.length > 0, { what: 'the node to say it has no peer' })
    // and status says so while it lasts (the log said it once)
    expect(node.status().warnings.filter(w => w.startsWith('no peer since '))).toHaveLength(1)
    // @libp2p/bootstrap dialled once, 100 ms after start; only the keeper dials after that
    await sleep(2000)
    await boot.start()
    await waitFor(() => node.libp2p.getConnections(boot.peerId).length > 0, { timeoutMs: 5000, what: 'a connection to the bootstrap peer' })
    await waitFor(() => notices.length === 2, { what: 'the node to say it is back' })
    expect(notices).toEqual(['lost: no peer', 'back: bootstrap'])
    expect(node.status().warnings.filter(w => w.startsWith('no peer since '))).toEqual([])
  })
})
