import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { request } from 'node:http'
import { randomBytes, createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { TunnelRefusedError } from '../../src/index.ts'
import { waitFor } from '../utils/cli.ts'
import { startEchoServer, startExitAndConsumer } from '../utils/in-process.ts'
import type { EchoServer } from '../utils/in-process.ts'
import { startTargetServer, sha256 } from '../utils/target-server.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { TargetServer } from '../utils/target-server.ts'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { IncomingMessage } from 'node:http'

const MiB = 1024 * 1024
const IDLE_SECONDS = 2

/** An embedding app's tunnels (SparebandNode.connect): real nodes over TCP on loopback, in this process. */
describe('node.connect(): a tunnel handed to the embedding app as a Duplex', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let target: TargetServer
  let echo: EchoServer
  let echoPort: number
  let echoSockets: Set<Socket>

  beforeAll(async () => {
    target = await startTargetServer(8 * MiB)
    echo = await startEchoServer()
    echoPort = echo.port
    echoSockets = echo.sockets
    // the consumer's idle timeout is what its end of a tunnel keeps; the exit's download cap
    // (100 MB/s, far above what the tests carry) is below the capacity it is told to claim
    ;({ exit, consumer } = await startExitAndConsumer([target.port, echoPort], { exit: { capacity_mbps: 1000, download_mbps: 800 }, consumerExit: { idle_timeout_seconds: IDLE_SECONDS }, dataDirPrefix: 'sb-connect-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    await echo?.close()
    await target?.close()
  })

  const proxyStats = (): any => (consumer.status() as any).proxy
  const allClosed = async (what: string): Promise<void> => {
    await waitFor(() => proxyStats().tunnelsOpen === 0 && (exit.status() as any).exit.tunnelsOpen === 0 && echoSockets.size === 0, { timeoutMs: 10_000, what })
  }
  /** An HTTP request over a tunnel the app opened itself. */
  const viaTunnel = async (path: string, options: { method?: string, body?: Buffer } = {}): Promise<{ res: IncomingMessage, body: Buffer }> => {
    const socket = await consumer.connect('127.0.0.1', target.port, { region: 'de' })
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: target.port, path, method: options.method ?? 'GET', createConnection: () => socket }, res => {
        const parts: Buffer[] = []
        res.on('data', (c: Buffer) => parts.push(c))
        res.on('end', () => resolve({ res, body: Buffer.concat(parts) }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end(options.body)
    })
  }

  it('carries an HTTP download and an upload with node:http, byte for byte, and counts them', async () => {
    const before = proxyStats()
    const { res, body } = await viaTunnel('/blob')
    expect(res.statusCode).toBe(200)
    expect(sha256(body)).toBe(target.blobSha256)
    const upload = randomBytes(6 * MiB)
    const posted = await viaTunnel('/upload', { method: 'POST', body: upload })
    expect(JSON.parse(posted.body.toString())).toEqual({ bytes: upload.byteLength, sha256: sha256(upload) })
    const after = proxyStats()
    expect(after.bytesIn - before.bytesIn).toBeGreaterThanOrEqual(8 * MiB)
    expect(after.bytesOut - before.bytesOut).toBeGreaterThanOrEqual(6 * MiB)
    expect(after.tunnelsTotal - before.tunnelsTotal).toBe(2)
    expect(target.requests.slice(-2)).toEqual(['GET /blob', 'POST /upload'])
    // node:http destroys a socket it will not reuse: that ends the tunnels, at both ends
    await waitFor(() => proxyStats().tunnelsOpen === 0 && (exit.status() as any).exit.tunnelsOpen === 0, { timeoutMs: 3000, what: 'the tunnels node:http let go of to close' })
  })

  it('passes half-close both ways: the app ends its side and still reads all the target sends', async () => {
    const socket = await consumer.connect('127.0.0.1', echoPort, { region: 'de', session: 'app.1' })
    const sent = randomBytes(3 * MiB + 17)
    const got = new Promise<{ sha: string, ended: boolean }>((resolve, reject) => {
      const h = createHash('sha256')
      socket.on('data', (c: Buffer) => h.update(c))
      socket.on('end', () => resolve({ sha: h.digest('hex'), ended: true }))
      socket.on('error', reject)
    })
    socket.end(sent)
    expect(await got).toEqual({ sha: sha256(sent), ended: true })
    await allClosed('the echo tunnel to close after both FINs')
  })

  it('tells the app why a tunnel was refused, and the target sees nothing', async () => {
    const connections = target.connections
    // not an allowed port at the exit
    const denied = await consumer.connect('127.0.0.1', 9, { region: 'de' }).catch(err => err)
    expect(denied).toBeInstanceOf(TunnelRefusedError)
    expect(denied.status).toBe('POLICY_DENIED')
    // the exit that refused, by its peer id, as the HTTP proxy's X-Spareband-Exit names it
    expect(denied.exit).toBe(exit.peerId.toString())
    // no exit in that region
    const none = await consumer.connect('127.0.0.1', target.port, { region: 'jp' }).catch(err => err)
    expect(none).toBeInstanceOf(TunnelRefusedError)
    expect(none.status).toBe('NO_EXIT')
    expect(none.exit).toBeUndefined()
    expect(none.message).toBe('no exit known in region jp')
    // the exit asking for its own region: it never tunnels through itself, and says so
    const own = await exit.connect('127.0.0.1', target.port, { region: 'de' }).catch(err => err)
    expect(own).toBeInstanceOf(TunnelRefusedError)
    expect(own.status).toBe('NO_EXIT')
    expect(own.message).toBe('no exit known in region de (this node\'s own exit, in de, does not carry its own traffic)')
    expect(target.connections).toBe(connections)
  })

  it('refuses arguments no exit is asked about, with a TypeError naming them', async () => {
    await expect(consumer.connect('127.0.0.1', 0)).rejects.toThrow(/port must be an integer from 1 to 65535, not 0/)
    await expect(consumer.connect('', 80)).rejects.toThrow(/host must be/)
    await expect(consumer.connect('127.0.0.1', 80, { region: 'germany!' })).rejects.toThrow(/unknown region "germany!"/)
    await expect(consumer.connect('127.0.0.1', 80, { session: 'a b' })).rejects.toThrow(/session must be/)
    await expect(consumer.connect('127.0.0.1', 80, { signal: AbortSignal.abort() })).rejects.toThrow(/abort/i)
    expect(proxyStats().tunnelsOpen).toBe(0)
  })

  it('a target that resets reaches the app as ECONNRESET; an app that destroys its end closes the tunnel at the exit', async () => {
    const broken = proxyStats().broken
    const socket = await consumer.connect('127.0.0.1', echoPort, { region: 'de' })
    await waitFor(() => echoSockets.size === 1, { what: 'the target connection' })
    const failed = new Promise<string>(resolve => {
      socket.once('error', (e: any) => resolve(e.code))
      socket.once('close', () => resolve('closed without an error'))
    })
    ;[...echoSockets][0].resetAndDestroy()
    expect(await failed).toBe('ECONNRESET')
    await allClosed('the reset tunnel to close')
    // counted as a tunnel that opened and broke, not one that failed to open
    expect(proxyStats().broken).toBe(broken + 1)

    const second = await consumer.connect('127.0.0.1', echoPort, { region: 'de' })
    await waitFor(() => echoSockets.size === 1 && (exit.status() as any).exit.tunnelsOpen === 1, { what: 'the second tunnel' })
    second.destroy()
    await allClosed('the exit to close the tunnel the app dropped')
  })

  it('closes a tunnel idle past the timeout, and not one that trickles', async () => {
    const trickle = await consumer.connect('127.0.0.1', echoPort, { region: 'de' })
    let echoed = 0
    trickle.on('data', (c: Buffer) => { echoed += c.byteLength })
    let closedAt = 0
    let error = ''
    trickle.on('error', (e: any) => { error = e.code })
    trickle.on('close', () => { closedAt = Date.now() })
    const started = Date.now()
    // a byte every half second for twice the idle timeout: never idle
    for (let i = 0; i < 4 * IDLE_SECONDS; i++) {
      trickle.write('x')
      await sleep(500)
    }
    expect(closedAt).toBe(0)
    expect(echoed).toBeGreaterThanOrEqual(4 * IDLE_SECONDS - 1)
    // then silence
    await waitFor(() => closedAt > 0, { timeoutMs: 10_000, what: 'the idle tunnel to close' })
    expect(closedAt - started).toBeGreaterThanOrEqual(4 * IDLE_SECONDS * 500 + IDLE_SECONDS * 1000 - 600)
    // as a proxy client's socket is: a timeout is a reset, not an end of data
    expect(error).toBe('ECONNRESET')
    await allClosed('idle tunnel cleanup')
  })

  it('lists the receipts of its tunnels and the region\'s exits to the app, as the CLI does', async () => {
    // the tunnels above carried bytes: their receipts are signed within a receipt interval (5 s)
    await waitFor(() => consumer.receipts().length > 0, { timeoutMs: 15_000, what: 'a receipt in the consumer\'s ledger' })
    const rows = consumer.receipts()
    expect(rows[0].consumer).toBe(consumer.peerId.toString())
    expect(rows[0].exit).toBe(exit.peerId.toString())
    expect(BigInt(rows[0].bytesDown) + BigInt(rows[0].bytesUp)).toBeGreaterThan(0n)
    expect(rows[0].source).toBe('own')
    // the exit holds the same session, found by the consumer's peer id
    await waitFor(() => exit.receipts({ peer: consumer.peerId.toString() }).some(r => r.id === rows[0].id), { what: 'the session in the exit\'s ledger' })
    expect(exit.receipts({ peer: exit.peerId.toString(), limit: 1 })).toHaveLength(1)
    expect(() => consumer.receipts({ limit: 0 })).toThrow(RangeError)
    expect(() => consumer.receipts({ peer: 'nobody' })).toThrow('peer "nobody" is not a peer id')

    const providers = await consumer.providers('DE')
    expect(providers.map(p => p.peerId)).toEqual([exit.peerId.toString()])
    // it advertises what its download cap lets it carry, not the 1000 Mbit/s it was set to claim
    expect(providers[0]).toMatchObject({ region: 'de', verified: expect.any(String), capacityMbps: 800, source: 'dht' })
    expect((exit.status().exit as any).capacityMbps).toBe(800)
    expect(await consumer.providers('jp')).toEqual([])
    await expect(consumer.providers('xx')).rejects.toThrow(TypeError)
  })

  it('ends the app\'s tunnels when the node stops', async () => {
    const socket: Duplex = await consumer.connect('127.0.0.1', echoPort, { region: 'de' })
    const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
    let error = ''
    socket.on('error', (e: any) => { error = e.code })
    await consumer.stop()
    await closed
    expect(error).toBe('ECONNRESET')
    expect(socket.destroyed).toBe(true)
    await expect(consumer.connect('127.0.0.1', echoPort)).rejects.toThrow(/not started/)
  })
})
