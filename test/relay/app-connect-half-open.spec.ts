import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer } from 'node:net'
import { waitFor } from '../utils/cli.ts'
import { startExitAndConsumer } from '../utils/in-process.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { AddressInfo, Server, Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/**
 * A target that ends first (a server that answers and closes): what the
 * app's end of the tunnel does then. net.connect() sockets end their side
 * when the other side ends (allowHalfOpen: false); a tunnel left half open
 * stays open at both ends until the idle timeout, and counts against the
 * exit's tunnels per consumer.
 */
describe('node.connect(): a target that ends first', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let server: Server
  let port: number
  /** What each target connection received after it sent its greeting and ended its side. */
  const received: string[] = []
  const sockets = new Set<Socket>()

  beforeAll(async () => {
    server = createServer({ allowHalfOpen: true }, s => {
      sockets.add(s)
      const i = received.push('') - 1
      s.on('data', (c: Buffer) => { received[i] += c.toString() })
      s.on('error', () => {})
      s.on('end', () => { s.end() })
      s.on('close', () => sockets.delete(s))
      s.end('hello\n')
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
    ;({ exit, consumer } = await startExitAndConsumer([port], { dataDirPrefix: 'sb-half-open-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })

  const tunnelsOpen = (): number[] => [(consumer.status() as any).proxy.tunnelsOpen, (exit.status() as any).exit.tunnelsOpen]
  const readAll = async (socket: Duplex): Promise<string> => new Promise((resolve, reject) => {
    let text = ''
    socket.on('data', (c: Buffer) => { text += c.toString() })
    socket.once('end', () => resolve(text))
    socket.once('error', reject)
  })

  it('by default, as a net socket: the app\'s side ends too, and the tunnel closes at both ends without an error', async () => {
    const socket = await consumer.connect('127.0.0.1', port, { region: 'de' })
    let error = ''
    socket.on('error', (e: any) => { error = e.code ?? e.message })
    const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
    expect(await readAll(socket)).toBe('hello\n')
    // a tunnel left half open would close only at the idle timeout (300 s)
    const outcome = await Promise.race([closed.then(() => 'closed'), new Promise(resolve => setTimeout(resolve, 5000, 'still open'))])
    expect(outcome).toBe('closed')
    expect(error).toBe('')
    expect(socket.writableEnded).toBe(true)
    await waitFor(() => tunnelsOpen().every(n => n === 0) && sockets.size === 0, { timeoutMs: 5000, what: 'the tunnel to close at both ends' })
  })

  it('with allowHalfOpen: true the app may still send after the target ended, and ends when it likes', async () => {
    const before = received.length
    const socket = await consumer.connect('127.0.0.1', port, { region: 'de', allowHalfOpen: true })
    expect(await readAll(socket)).toBe('hello\n')
    await new Promise(resolve => setTimeout(resolve, 300))
    expect(socket.writableEnded).toBe(false)
    expect(tunnelsOpen()).toEqual([1, 1])
    const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
    socket.end('still here\n')
    await closed
    await waitFor(() => received.length === before + 1 && received[before] === 'still here\n', { timeoutMs: 5000, what: 'the target to get the late bytes' })
    await waitFor(() => tunnelsOpen().every(n => n === 0), { timeoutMs: 5000, what: 'the tunnel to close' })
  })

  // last: it stops the consumer
  it('a socket the app stopped reading after the target ended closes without an error when the node stops', async () => {
    // as node:http leaves one with agent: false: the whole answer and the FIN are in it, unread, and nothing
    // listens for 'error'; the reset at stop() was an uncaught ECONNRESET that took the app down
    const socket = await consumer.connect('127.0.0.1', port, { region: 'de' })
    await waitFor(() => socket.readableLength === 'hello\n'.length, { timeoutMs: 5000, what: 'the answer in the app\'s end' })
    expect(socket.listenerCount('error')).toBe(0)
    const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
    await consumer.stop()
    await closed
    expect(socket.errored).toBeNull()
  })
})
