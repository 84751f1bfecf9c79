import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { tunnelExit } from '../../src/relay/exit.ts'
import { TunnelClient } from '../../src/relay/tunnel-client.ts'
import { WarmStreams } from '../../src/relay/warm-streams.ts'
import { TunnelStatus, decodeTunnelResponse, readFrame } from '../../src/relay/tunnel-protocol.ts'
import { waitFor } from '../utils/cli.ts'
import type { TunnelExit } from '../../src/relay/exit.ts'
import type { ExitSelector } from '../../src/relay/exit-selector.ts'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import type { AddressInfo, Server } from 'node:net'

/** Tunnel streams opened ahead of need, between two real libp2p nodes over TCP on loopback. */
describe('warm tunnel streams', () => {
  let exitNode: Libp2p<{ exit: TunnelExit }>
  let consumer: Libp2p
  let echo: Server
  let echoPort: number
  const EXIT_WAIT_MS = 1000

  beforeAll(async () => {
    echo = createServer({ allowHalfOpen: true }, s => { s.on('error', () => {}); s.pipe(s) })
    await new Promise<void>(resolve => echo.listen(0, '127.0.0.1', resolve))
    echoPort = (echo.address() as AddressInfo).port
    const base = { addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] }
    exitNode = await createLibp2p({
      ...base,
      services: {
        exit: tunnelExit({ policy: { allowedPorts: [[echoPort, echoPort]], allowPrivateTargets: true }, warmStreamWaitMs: EXIT_WAIT_MS, requestTimeoutMs: EXIT_WAIT_MS })
      }
    })
    consumer = await createLibp2p(base)
    await consumer.dial(exitNode.getMultiaddrs()[0])
  })
  afterAll(async () => {
    await consumer?.stop()
    await exitNode?.stop()
    echo?.close()
  })

  const exitStats = (): ReturnType<TunnelExit['status']> => exitNode.services.exit.status()
  const exitTunnelStreams = (): number => exitNode.getConnections().flatMap(c => c.streams).filter(s => s.protocol === TUNNEL_PROTOCOL).length
  const openStream = async (peer: PeerId): Promise<Stream | undefined> =>
    consumer.getConnections(peer).length === 0 ? undefined : consumer.dialProtocol(peer, TUNNEL_PROTOCOL, { runOnLimitedConnection: true })
  const onlyThisExit: ExitSelector = { candidates: async () => [exitNode.peerId], report: () => {} }
  const clientWith = (warm?: WarmStreams): TunnelClient => new TunnelClient({
    logger: consumer.logger,
    dialProtocol: async (peer, protocol, options) => consumer.dialProtocol(peer, protocol, options)
  }, { selector: onlyThisExit, warm: warm as any })

  /** Opens a tunnel to the echo server and checks that 64 KiB come back unchanged. */
  async function echoThrough (client: TunnelClient): Promise<void> {
    const { stream, rest } = await client.open({ host: '127.0.0.1', port: echoPort }, {})
    expect(rest.byteLength).toBe(0)
    const data = randomBytes(64 * 1024)
    const got = createHash('sha256')
    let n = 0
    const done = new Promise<void>((resolve, reject) => {
      stream.addEventListener('message', evt => {
        for (const b of evt.data instanceof Uint8Array ? [evt.data] : evt.data) { got.update(b); n += b.byteLength }
        if (n >= data.byteLength) resolve()
      })
      stream.addEventListener('close', evt => { if (n < data.byteLength) reject(evt.error ?? new Error('closed early')) })
    })
    stream.send(data)
    await done
    expect(got.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'))
    await stream.close()
  }

  it('after a tunnel works, keeps streams ready, and the next tunnels start on them', async () => {
    const warm = new WarmStreams({ open: openStream, log: consumer.logger.forComponent('test'), perExit: 4 })
    const client = clientWith(warm)
    await echoThrough(client)
    expect(warm.stats).toEqual({ hits: 0, misses: 1 })
    await waitFor(() => warm.counts().ready === 4, { what: '4 warm streams' })
    const deniedBefore = exitStats().denied
    for (let i = 0; i < 3; i++) await echoThrough(client)
    expect(warm.stats.hits).toBe(3)
    // refilled in a batch once few are left: never more than 4 idle
    expect(warm.counts().ready + warm.counts().opening).toBeLessThanOrEqual(4)
    expect(exitStats().denied).toBe(deniedBefore)
    warm.stop()
    expect(warm.counts()).toEqual({ ready: 0, opening: 0 })
    // the exit closes unused streams quietly: no tunnel, no refusal
    await waitFor(() => exitTunnelStreams() === 0, { what: 'the exit to close the warm streams' })
    expect(exitStats().denied).toBe(deniedBefore)
  })

  it('closes streams idle past their time and stops warming an exit no longer used', async () => {
    const warm = new WarmStreams({ open: openStream, log: consumer.logger.forComponent('test'), perExit: 3, maxIdleMs: 500, keepExitMs: 0 })
    const deniedBefore = exitStats().denied
    const totalBefore = exitStats().tunnelsTotal
    warm.replenish(exitNode.peerId)
    await waitFor(() => warm.counts().ready === 3 && exitTunnelStreams() === 3, { what: '3 warm streams at both ends' })
    await waitFor(() => warm.counts().ready === 0 && warm.counts().opening === 0, { what: 'the idle streams to close' })
    await waitFor(() => exitTunnelStreams() === 0, { what: 'the exit to let them go' })
    expect(exitStats().denied).toBe(deniedBefore)
    expect(exitStats().tunnelsTotal).toBe(totalBefore)
    expect(warm.take(exitNode.peerId)).toBeUndefined()
  })

  it('a warm stream that broke while it idled costs a fresh stream, not a failed tunnel, nor a refusal at the exit', async () => {
    const deniedBefore = exitStats().denied
    const broken = await consumer.dialProtocol(exitNode.peerId, TUNNEL_PROTOCOL)
    broken.abort(new Error('gone while idle'))
    let taken = 0
    const stale = { take: () => { taken++; return broken }, replenish: () => {} }
    await echoThrough(clientWith(stale as unknown as WarmStreams))
    expect(taken).toBe(1)
    await waitFor(() => exitTunnelStreams() === 0, { what: 'the exit to let the streams go' })
    // a reset before any byte is an unused stream, not a bad request
    expect(exitStats().denied).toBe(deniedBefore)
  })

  it('a ready stream the exit half-closed is closed when the pool passes over it, not left open at both ends', async () => {
    const warm = new WarmStreams({ open: openStream, log: consumer.logger.forComponent('test'), perExit: 1 })
    warm.replenish(exitNode.peerId)
    await waitFor(() => warm.counts().ready === 1 && exitTunnelStreams() === 1, { what: 'one warm stream at both ends' })
    const atExit = exitNode.getConnections().flatMap(c => c.streams).find(s => s.protocol === TUNNEL_PROTOCOL)!
    // the exit ends its side (an exit that times idle streams out sooner would): the consumer's stream is half-open
    void atExit.close().catch(() => {})
    const mine = consumer.getConnections(exitNode.peerId).flatMap(c => c.streams).find(s => s.protocol === TUNNEL_PROTOCOL)!
    await waitFor(() => mine.remoteWriteStatus !== 'writable', { what: 'the exit\'s FIN' })
    expect(mine.status).toBe('open')
    expect(warm.take(exitNode.peerId)).toBeUndefined()
    await waitFor(() => mine.status !== 'open' && exitTunnelStreams() === 0, { what: 'both ends to close' })
    warm.stop()
  })

  it('the exit tells a stream that never sends its request why it goes, after the warm wait, and counts no refusal', async () => {
    const before = exitStats()
    const denials: unknown[] = []
    const onDenied = (e: CustomEvent): void => { denials.push(e.detail) }
    exitNode.services.exit.addEventListener('exit:tunnel:denied', onDenied)
    const stream = await consumer.dialProtocol(exitNode.peerId, TUNNEL_PROTOCOL)
    const started = Date.now()
    const { frame } = await readFrame(stream, { signal: AbortSignal.timeout(5000) })
    const waited = Date.now() - started
    const res = decodeTunnelResponse(frame)
    expect(res.status).toBe(TunnelStatus.BAD_REQUEST)
    expect(res.message).toMatch(`no request within ${EXIT_WAIT_MS} ms`)
    expect(waited).toBeGreaterThanOrEqual(EXIT_WAIT_MS - 50)
    // a warm stream whose consumer went quiet: no request was made, so it is no refusal
    await waitFor(() => exitTunnelStreams() === 0, { what: 'the exit to let the stream go' })
    exitNode.services.exit.removeEventListener('exit:tunnel:denied', onDenied)
    expect(denials).toEqual([])
    expect(exitStats().denied).toBe(before.denied)
    expect(exitStats().deniedByStatus).toEqual(before.deniedByStatus)
  })

  it('the exit refuses a request that starts but does not finish in time', async () => {
    const stream = await consumer.dialProtocol(exitNode.peerId, TUNNEL_PROTOCOL)
    // a length prefix of 40 bytes, and nothing behind it
    stream.send(Uint8Array.from([40, 0x0a]))
    const { frame } = await readFrame(stream, { signal: AbortSignal.timeout(5000) })
    const res = decodeTunnelResponse(frame)
    expect(res.status).toBe(TunnelStatus.BAD_REQUEST)
    expect(res.message).toMatch(`no complete frame within ${EXIT_WAIT_MS} ms`)
    // a request begun and not finished is a refusal
    await waitFor(() => (exitStats().deniedByStatus.BAD_REQUEST ?? 0) >= 1, { what: 'the refusal counted' })
  })

  it('a ready stream the node calls stale (a relayed one, once a direct one exists) is closed, not used', async () => {
    const staleOnes = new Set<Stream>()
    const opened: Stream[] = []
    const recordingOpen = async (peer: PeerId): Promise<Stream | undefined> => {
      const stream = await openStream(peer)
      if (stream != null) opened.push(stream)
      return stream
    }
    const warm = new WarmStreams({ open: recordingOpen, log: consumer.logger.forComponent('test'), perExit: 4, stale: (_exit, s) => staleOnes.has(s) })
    warm.replenish(exitNode.peerId)
    await waitFor(() => warm.counts().ready === 4, { what: '4 warm streams' })
    // the pool hands them out in the order they opened
    expect(warm.take(exitNode.peerId)).toBe(opened[0])
    expect(warm.take(exitNode.peerId)).toBe(opened[1])
    staleOnes.add(opened[2])
    expect(warm.take(exitNode.peerId)).toBe(opened[3])
    expect(warm.stats.hits).toBe(3)
    await waitFor(() => opened[2].status !== 'open', { what: 'the stale stream to be closed' })
    expect(warm.counts().ready).toBe(0)
    for (const s of [opened[0], opened[1], opened[3]]) s.abort(new Error('test done with it'))
    warm.stop()
  })

  it('warm streams go when their connection goes', async () => {
    const warm = new WarmStreams({ open: openStream, log: consumer.logger.forComponent('test'), perExit: 2 })
    warm.replenish(exitNode.peerId)
    await waitFor(() => warm.counts().ready === 2, { what: '2 warm streams' })
    await consumer.hangUp(exitNode.peerId)
    await waitFor(() => warm.counts().ready === 0, { what: 'the pool to notice the closed connection' })
    expect(warm.take(exitNode.peerId)).toBeUndefined()
    // and without a connection, warming does not dial
    warm.replenish(exitNode.peerId)
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(warm.counts()).toEqual({ ready: 0, opening: 0 })
    expect(consumer.getConnections(exitNode.peerId)).toHaveLength(0)
    warm.stop()
  })
})
