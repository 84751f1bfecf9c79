import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { connect } from 'node:net'
import { waitFor } from '../utils/cli.ts'
import { startExitAndConsumer } from '../utils/in-process.ts'
import { startClosedDoor } from '../utils/target-server.ts'
import type { ClosedDoor } from '../utils/target-server.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { Socket } from 'node:net'

/**
 * A proxy client that leaves while its tunnel is being opened (curl hitting
 * its timeout, a closed browser tab): the consumer's set-up ends with it,
 * its stream to the exit goes, and the exit stops connecting to the target.
 * The target is a closed door: a port whose connects hang (its accept queue
 * is full) until the test opens it, and then any connect still retrying
 * gets in and is seen. Real exit and consumer nodes over loopback TCP, real
 * client sockets; the exit's connect timeout is 30 s, the consumer's wait
 * for the exit's answer 15 s, so nothing here ends by a timeout.
 */
describe('a proxy client gone before its tunnel is open', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let doors: ClosedDoor[]
  const exitStats = (): any => (exit.status() as any).exit
  const proxyStats = (): any => (consumer.status() as any).proxy

  beforeAll(async () => {
    doors = await Promise.all([startClosedDoor(), startClosedDoor()])
    ;({ exit, consumer } = await startExitAndConsumer(doors.map(d => d.port), { exit: { connect_timeout_seconds: 30 }, dataDirPrefix: 'sb-client-gone-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    for (const d of doors ?? []) await d.close()
  })

  /** Sends `request` on a new connection to the consumer's `port` and waits until the exit is connecting to the target. */
  async function clientWaiting (port: number, request: Buffer): Promise<Socket> {
    const client = connect({ port, host: '127.0.0.1' })
    client.on('error', () => {})
    client.on('data', () => {})
    await new Promise<void>(resolve => client.once('connect', resolve))
    client.write(request)
    await waitFor(() => exitStats().tunnelsConnecting === 1, { timeoutMs: 10_000, what: 'the exit to be connecting to the closed door' })
    return client
  }

  /** The client is gone: the exit gave up its connect at once, and opening the door shows no connect of the exit's still trying. */
  async function nothingLeft (door: ClosedDoor, failedBefore: number): Promise<void> {
    await waitFor(() => exitStats().tunnelsConnecting === 0, { timeoutMs: 2000, what: 'the exit to give up its connect' })
    await door.open()
    // the SYN retries of a connect still under way come 1 s and 3 s after its first SYN
    await new Promise(resolve => setTimeout(resolve, 3500))
    expect(door.others()).toEqual([])
    expect(exitStats().tunnelsOpen).toBe(0)
    // the exit was not refused anything, and no tunnel failed: the client left
    expect(exitStats().denied).toBe(0)
    expect(proxyStats().failed).toBe(failedBefore)
    expect(proxyStats().tunnelsOpen).toBe(0)
  }

  it('SOCKS5: a client that closes (FIN) during CONNECT ends the tunnel set-up at the consumer and the exit\'s connect', async () => {
    const door = doors[0]
    const failedBefore = proxyStats().failed
    // greeting (no auth) and CONNECT 127.0.0.1:port together
    const client = await clientWaiting(proxyStats().socksPort, Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, door.port >> 8, door.port & 0xff]))
    client.destroy()
    await nothingLeft(door, failedBefore)
  }, 30_000)

  it('HTTP CONNECT: a client that resets during CONNECT ends the set-up the same way', async () => {
    const door = doors[1]
    const failedBefore = proxyStats().failed
    const client = await clientWaiting(proxyStats().httpPort, Buffer.from(`CONNECT 127.0.0.1:${door.port} HTTP/1.1\r\nHost: 127.0.0.1:${door.port}\r\n\r\n`))
    client.resetAndDestroy()
    await nothingLeft(door, failedBefore)
  }, 30_000)
})
