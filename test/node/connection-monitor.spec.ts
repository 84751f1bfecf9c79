import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { randomBytes, createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { startEchoServer, startExitAndConsumer } from '../utils/in-process.ts'
import { socksConnect } from '../utils/socks-client.ts'
import type { EchoServer } from '../utils/in-process.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { Socket } from 'node:net'

const PING = '/ipfs/ping/1.0.0'
/** How long each node takes to answer a ping here: what a ping queued behind hundreds of busy tunnels took. */
const SLOW_PING_MS = 8000

/** Echoes `data` through the tunnel; resolves with the SHA-256 of what came back. */
async function echoed (socket: Socket, data: Buffer): Promise<string> {
  const hash = createHash('sha256')
  let n = 0
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      hash.update(chunk)
      n += chunk.byteLength
      if (n >= data.byteLength) { socket.off('data', onData); resolve(hash.digest('hex')) }
    }
    socket.on('data', onData)
    socket.once('close', () => reject(new Error(`tunnel closed after ${n} of ${data.byteLength} bytes`)))
    socket.write(data)
  })
}

/**
 * libp2p's connection monitor pings every connection every 10 s and aborts
 * the connection, with every tunnel on it, when a ping takes longer than
 * its timeout. Under a scraper's load (600 downloads through one exit) a
 * ping's frames wait behind the data already on the connection for longer
 * than libp2p's 5 s. Real nodes on loopback in this process, whose ping
 * handlers answer after SLOW_PING_MS.
 */
describe('a connection whose pings are slow to come back', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let echo: EchoServer

  beforeAll(async () => {
    echo = await startEchoServer()
    ;({ exit, consumer } = await startExitAndConsumer([echo.port], { dataDirPrefix: 'sb-monitor-' }))
    for (const node of [exit, consumer]) {
      await node.libp2p.unhandle(PING)
      await node.libp2p.handle(PING, async stream => {
        for await (const chunk of stream) {
          await sleep(SLOW_PING_MS)
          stream.send(chunk)
        }
        await stream.close().catch(() => {})
      }, { runOnLimitedConnection: true })
    }
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    await echo?.close()
  })

  it('is kept, and so is the tunnel on it', async () => {
    const [connection] = consumer.libp2p.getConnections(exit.peerId)
    expect(connection.status).toBe('open')
    const { socket, reply } = await socksConnect((consumer.status() as any).proxy.socksPort, '127.0.0.1', echo.port)
    expect(reply).toBe(0)
    const first = randomBytes(256 * 1024)
    expect(await echoed(socket, first)).toBe(createHash('sha256').update(first).digest('hex'))
    // at least one heartbeat of each side (every 10 s) has waited its SLOW_PING_MS answer by then
    await sleep(10_000 + SLOW_PING_MS + 2000)
    expect(connection.status).toBe('open')
    expect(consumer.libp2p.getConnections(exit.peerId).map(c => c.id)).toEqual([connection.id])
    const second = randomBytes(1024 * 1024)
    expect(await echoed(socket, second)).toBe(createHash('sha256').update(second).digest('hex'))
    socket.destroy()
  }, 60_000)
})
