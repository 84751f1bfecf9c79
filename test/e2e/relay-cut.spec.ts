import { describe, it, expect, afterEach } from 'vitest'
import { setTimeout as sleep } from 'node:timers/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { createIdentity, createSparebandNode } from '../../src/index.ts'
import { freePort, tempDir, waitFor } from '../utils/cli.ts'
import { curl } from '../utils/network.ts'
import { socksConnect } from '../utils/socks-client.ts'
import { sha256, startTargetServer } from '../utils/target-server.ts'
import type { SparebandNode, SparebandConfigInput } from '../../src/index.ts'
import type { TunnelExit } from '../../src/relay/exit.ts'

/**
 * A circuit that goes away under open tunnels: cut by the relay at its data
 * limit, or gone with the relay. yamux closes the streams of a connection
 * that ends without an error and without a FIN; the tunnel must still tell
 * its client (and the target) that it broke, with a TCP RST, not end the
 * download as if it were complete. Relay R, exit E listening only on
 * `<R>/p2p-circuit`, consumer C listening on nothing; all on 127.0.0.1.
 */
describe('a relayed circuit cut under an open tunnel', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
  })

  const base = { api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8 } }

  async function relayedTrio (relay: SparebandConfigInput['relay'], targetPort: number, exitNetwork: SparebandConfigInput['network'] = {}): Promise<{ relay: SparebandNode, exit: SparebandNode, consumer: SparebandNode, relayDir: string, relayAddr: string }> {
    const relayDir = await tempDir('sb-cut-')
    const r = await createSparebandNode({ dataDir: relayDir, config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0'], network: { local_testnet: true }, exit: { enabled: false }, relay } })
    await r.start()
    cleanups.push(async () => r.stop())
    const relayAddr = r.libp2p.getMultiaddrs()[0].toString()
    const e = await createSparebandNode({
      dataDir: await tempDir('sb-cut-'),
      config: { ...base, region: 'de', listen: [`${relayAddr}/p2p-circuit`], network: { local_testnet: true, ...exitNetwork }, exit: { allow_private_targets: true, allowed_ports: [targetPort] } }
    })
    await e.start()
    cleanups.push(async () => e.stop())
    await waitFor(() => (r.libp2p.services.relay as any).server.reservations.has(e.peerId), { what: 'E\'s reservation on R' })
    const c = await consumerThrough(relayAddr, e)
    return { relay: r, exit: e, consumer: c, relayDir, relayAddr }
  }

  /** C, listening on nothing, connected to E through R only, with E identified as an exit and its own proof of work solved. */
  async function consumerThrough (relayAddr: string, e: SparebandNode): Promise<SparebandNode> {
    const c = await createSparebandNode({ dataDir: await tempDir('sb-cut-'), config: { ...base, listen: [], network: { local_testnet: true, dht_server: false }, exit: { enabled: false } } })
    await c.start()
    cleanups.push(async () => c.stop())
    const conn = await c.libp2p.dial(multiaddr(`${relayAddr}/p2p-circuit/p2p/${e.peerId}`))
    expect(conn.limits).toBeDefined()
    await waitFor(async () => (await c.peers()).some(p => p.peerId === e.peerId.toString() && p.agent?.includes('exit') === true), { what: 'C to identify E through R' })
    await waitFor(() => (c.status() as any).accounting.proofOfWork.solved === true, { what: 'C\'s proof of work' })
    return c
  }

  /** A raw HTTP GET through C's SOCKS5 proxy: how many bytes came, and whether the end was a FIN or an error. */
  async function rawGet (consumer: SparebandNode, port: number, path: string, onBytes: (n: number) => void = () => {}): Promise<{ bytes: number, error?: string, endedAt: number }> {
    const { socket, reply } = await socksConnect((consumer.status() as any).proxy.socksPort, '127.0.0.1', port)
    expect(reply).toBe(0)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
    return await new Promise(resolve => {
      let bytes = 0
      let error: string | undefined
      socket.on('data', d => { bytes += d.byteLength; onBytes(bytes) })
      socket.on('error', (err: any) => { error = err.code ?? err.message })
      socket.on('close', () => resolve({ bytes, error, endedAt: Date.now() }))
    })
  }

  /** The same relay back: its identity, on its port. */
  async function restartRelay (relayDir: string, relayAddr: string): Promise<SparebandNode> {
    const port = Number(/\/tcp\/(\d+)/.exec(relayAddr)![1])
    const again = await createSparebandNode({ dataDir: relayDir, config: { ...base, listen: [`/ip4/127.0.0.1/tcp/${port}`], network: { local_testnet: true }, exit: { enabled: false } } })
    await again.start()
    cleanups.push(async () => again.stop())
    return again
  }

  const tunnelsOpen = (n: SparebandNode, part: 'exit' | 'proxy'): number => (n.status() as any)[part].tunnelsOpen

  it('at the relay\'s data limit: the client gets a reset, not a clean end of a shorter download', async () => {
    const target = await startTargetServer(8 * 1024 * 1024)
    cleanups.push(target.close)
    const { exit, consumer } = await relayedTrio({ data_limit_mb: 2 }, target.port)
    const closed: Array<string | undefined> = []
    const exitService = exit.libp2p.services.exit as TunnelExit
    exitService.addEventListener('exit:tunnel:close', e => closed.push(e.detail.error))

    const r = await rawGet(consumer, target.port, '/blob')
    expect(r.bytes).toBeGreaterThan(0)
    expect(r.bytes).toBeLessThan(2 * 1024 * 1024)
    expect(r.error).toBe('ECONNRESET')
    // the exit saw the cut as an error as well (and reset the target)
    await waitFor(() => closed.length === 1, { what: 'the exit\'s tunnel to close' })
    expect(closed[0]).toBeDefined()
    await waitFor(() => tunnelsOpen(exit, 'exit') === 0 && tunnelsOpen(consumer, 'proxy') === 0, { what: 'no tunnel open on E or C' })
  }, 30_000)

  it('when the relay stops mid-transfer: a prompt reset, and no tunnel left open', async () => {
    const target = await startTargetServer(64 * 1024 * 1024)
    cleanups.push(target.close)
    const { relay, exit, consumer } = await relayedTrio({}, target.port)
    let stoppedAt = 0
    let during: unknown
    // the relay's status counts E's reservation and C's connection to E through it (a circuit carries all their tunnels)
    expect(relay.status().relayService).toEqual({ running: true, reason: 'on', reservations: 1, circuits: 1 })
    // /drip sends about 6 MB/s: still running when the relay goes
    const r = await rawGet(consumer, target.port, '/drip', n => {
      if (stoppedAt === 0 && n > 1_000_000) { during = relay.status().relayService; stoppedAt = Date.now(); void relay.stop() }
    })
    expect(during).toEqual({ running: true, reason: 'on', reservations: 1, circuits: 1 })
    expect(stoppedAt).toBeGreaterThan(0)
    expect(r.bytes).toBeLessThan(target.blob.byteLength)
    expect(r.error).toBe('ECONNRESET')
    expect(r.endedAt - stoppedAt).toBeLessThan(5_000)
    await waitFor(() => tunnelsOpen(exit, 'exit') === 0 && tunnelsOpen(consumer, 'proxy') === 0, { what: 'no tunnel open on E or C' })
  }, 30_000)

  it('a duration limit is enforced when the data limit is 0 (no data limit), and cuts with a reset', async () => {
    const target = await startTargetServer(64 * 1024 * 1024)
    cleanups.push(target.close)
    const { exit, consumer } = await relayedTrio({ data_limit_mb: 0, duration_limit_seconds: 2 }, target.port)
    const started = Date.now()
    // /drip takes about 10 s for its 64 MB: the 2 s limit cuts it
    const r = await rawGet(consumer, target.port, '/drip')
    expect(r.bytes).toBeLessThan(target.blob.byteLength)
    expect(r.error).toBe('ECONNRESET')
    expect(r.endedAt - started).toBeLessThan(4_000)
    await waitFor(() => tunnelsOpen(exit, 'exit') === 0 && tunnelsOpen(consumer, 'proxy') === 0, { what: 'no tunnel open on E or C' })
  }, 30_000)

  it('after the relay restarts, the exit that named it reserves again and new tunnels go through', async () => {
    const target = await startTargetServer(64 * 1024)
    cleanups.push(target.close)
    const { relay, exit, consumer, relayDir, relayAddr } = await relayedTrio({}, target.port)
    await relay.stop()
    await waitFor(() => !exit.libp2p.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit')), { what: 'E to lose its relayed address' })
    const again = await restartRelay(relayDir, relayAddr)
    await waitFor(() => (again.libp2p.services.relay as any).server.reservations.has(exit.peerId), { timeoutMs: 20_000, what: 'E\'s reservation on the restarted R' })
    const r = await rawGet(consumer, target.port, '/slice/1000')
    expect(r.error).toBeUndefined()
    expect(r.bytes).toBeGreaterThan(1000)
  }, 40_000)

  it('an exit whose named relay is down when it starts starts all the same, and reserves on the relay once it is up', async () => {
    const target = await startTargetServer(64 * 1024)
    cleanups.push(target.close)
    // R's identity and port, R not running
    const relayDir = await tempDir('sb-cut-')
    // its identity only: a node made for it would hold the data directory (node.lock) and its ledger open
    const relayId = (await createIdentity(relayDir)).peerId
    const relayAddr = `/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${relayId}`
    const exit = await createSparebandNode({
      dataDir: await tempDir('sb-cut-'),
      config: { ...base, region: 'de', listen: [`${relayAddr}/p2p-circuit`], network: { local_testnet: true, redial_max_seconds: 2 }, exit: { allow_private_targets: true, allowed_ports: [target.port] } }
    })
    // libp2p refused the start when the relay did not answer
    await exit.start()
    cleanups.push(async () => exit.stop())
    expect(exit.status().relays).toEqual([{ addr: relayAddr, connected: false, reserved: false }])
    const lostWarning = (): string[] => exit.status().warnings.filter(w => w.startsWith(`relay ${relayAddr} is lost since `))
    await waitFor(() => lostWarning().length === 1, { what: 'the lost relay in status warnings' })
    const relay = await restartRelay(relayDir, relayAddr)
    await waitFor(() => (relay.libp2p.services.relay as any).server.reservations.has(exit.peerId), { timeoutMs: 15_000, what: 'E\'s reservation on R, once up' })
    await waitFor(() => exit.libp2p.getMultiaddrs().some(a => a.toString().startsWith(`${relayAddr}/p2p-circuit`)), { what: 'E to advertise its address through R' })
    expect(exit.status().relays).toEqual([{ addr: relayAddr, connected: true, reserved: true }])
    // reserved again: the warning is over
    await waitFor(() => lostWarning().length === 0, { what: 'the warning to go' })
    const consumer = await consumerThrough(relayAddr, exit)
    const r = await rawGet(consumer, target.port, '/slice/1000')
    expect(r.error).toBeUndefined()
    expect(r.bytes).toBeGreaterThan(1000)
  }, 40_000)

  it('after the relay is down for longer than libp2p would retry it (35 s), the exit redials it, reserves again, and a tunnel through it carries the right bytes', async () => {
    const target = await startTargetServer(4 * 1024 * 1024)
    cleanups.push(target.close)
    // X: another relay the exit met. Every node relays by default, so an exit
    // that names one relay usually holds a second reservation, made by the
    // relay search; with it the search is satisfied and libp2p never dials
    // R again (without it, the search's random walk happens to: it queries
    // R, the only peer in E's DHT, in a tight loop)
    const x = await createSparebandNode({ dataDir: await tempDir('sb-cut-'), config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0'], network: { local_testnet: true }, exit: { enabled: false } } })
    await x.start()
    cleanups.push(async () => x.stop())
    // redials at most 2 s apart (60 s in production) keep the wait after R is back short
    const { relay, exit, consumer, relayDir, relayAddr } = await relayedTrio({}, target.port, { bootstrap: [x.libp2p.getMultiaddrs()[0].toString()], redial_max_seconds: 2 })
    await waitFor(() => (x.libp2p.services.relay as any).server.reservations.has(exit.peerId), { what: 'E\'s reservation on X' })
    const notices: string[] = []
    exit.addEventListener('keeper:lost', e => notices.push(`lost ${e.detail.reason}`))
    exit.addEventListener('keeper:back', e => notices.push(`back after ${Math.round(e.detail.downMs / 1000)} s, ${e.detail.attempts} redials`))
    const viaRelay = `/p2p/${relay.peerId}/p2p-circuit`

    await relay.stop()
    await waitFor(() => !exit.libp2p.getMultiaddrs().some(a => a.toString().includes(viaRelay)), { what: 'E to lose its address through R' })
    // longer than libp2p's reconnect queue retries a peer (5 retries, 1+2+4+8+16 s
    // apart; it does not retry a relay at all, see src/node/peer-keeper.ts)
    await sleep(35_000)
    const again = await restartRelay(relayDir, relayAddr)
    await waitFor(() => (again.libp2p.services.relay as any).server.reservations.has(exit.peerId), { timeoutMs: 15_000, what: 'E\'s reservation on the restarted R' })
    await waitFor(() => exit.libp2p.getMultiaddrs().some(a => a.toString().includes(viaRelay)), { what: 'E to advertise its address through R again' })

    // C's connection to E went with R: C comes back to E through R only
    const conn = await consumer.libp2p.dial(multiaddr(`${relayAddr}/p2p-circuit/p2p/${exit.peerId}`))
    expect(conn.limits).toBeDefined()
    const r = await curl(['--socks5-hostname', `127.0.0.1:${(consumer.status() as any).proxy.socksPort}`, `http://127.0.0.1:${target.port}/blob`])
    expect(r.stderr).toBe('')
    expect(sha256(r.stdout)).toBe(target.blobSha256)
    expect(consumer.libp2p.getConnections(exit.peerId).map(c => c.remoteAddr.toString()).every(a => a.includes(viaRelay))).toBe(true)

    expect(exit.status().relays).toEqual([{ addr: relayAddr, connected: true, reserved: true }])
    // one notice each way, not one per redial
    expect(notices).toHaveLength(2)
    expect(notices[0]).toBe('lost not connected')
    expect(notices[1]).toMatch(/^back after 3[5-9] s, \d+ redials$/)
    expect(Number(/(\d+) redials/.exec(notices[1])![1])).toBeGreaterThanOrEqual(10)
  }, 80_000)
})
