import { describe, it, expect, afterEach } from 'vitest'
import { createServer, connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { pipeSocketStream } from '../../src/relay/pipe.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import type { AddressInfo, Server, Socket } from 'node:net'

const PROTOCOL = '/spareband-test/gate-hang/1.0.0'

/**
 * The exit's pipe with accounting's gate shut for good (a consumer over its
 * unsigned threshold that never signs): the target answers and closes, the
 * consumer closes its side, and the tunnel must still end at the idle
 * timeout, not hold the stream (and the exit's tunnel slot) for ever.
 * Real libp2p nodes over TCP on loopback, a real target socket.
 */
describe('pipe with a gate that is never opened', () => {
  const cleanup: Array<() => Promise<void> | void> = []
  afterEach(async () => { for (const c of cleanup.splice(0).reverse()) await c() })

  it('ends at the idle timeout once the target and the consumer have both closed', async () => {
    const target: Server = createServer({ allowHalfOpen: true }, s => {
      s.on('error', () => {})
      s.end(Buffer.alloc(1000, 1))
    })
    await new Promise<void>(resolve => target.listen(0, '127.0.0.1', resolve))
    cleanup.push(() => { target.close() })
    const [exit, consumer] = await Promise.all([loopbackNode(), loopbackNode()])
    cleanup.push(async () => exit.stop(), async () => consumer.stop())
    let received = 0
    await consumer.handle(PROTOCOL, stream => {
      stream.addEventListener('message', evt => { received += evt.data.byteLength })
      // the consumer's request is done: it closes its side a little later
      void sleep(800).then(async () => stream.close()).catch(() => {})
    })
    const stream = await exit.dialProtocol(consumer.getMultiaddrs()[0], PROTOCOL)
    const socket: Socket = connect({ port: (target.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true })
    await new Promise(resolve => socket.once('connect', resolve))
    let gated = 0
    const started = Date.now()
    const result = await pipeSocketStream(socket, stream, {
      idleTimeoutMs: 1500,
      beforeChunk: direction => {
        if (direction !== 'toStream') return undefined
        gated++
        return new Promise<void>(() => {})
      }
    })
    expect(gated).toBe(1)
    expect(received).toBe(0)
    expect(result.error?.message).toMatch(/held at the gate/)
    // the socket closed at about 0.8 s, then one idle timeout
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500)
    expect(Date.now() - started).toBeLessThan(8000)
    expect(stream.status).not.toBe('open')
  })
})
