/**
 * A node that is an exit itself (the default) opens as many tunnels to
 * another exit as its proxies ask for. libp2p takes the limit a protocol
 * handler was registered with over the one a dial passes, and the exit's
 * handler had none: the default of 64 outbound streams capped this node's
 * own tunnels to any one exit, and the rest failed BUSY ("Too many outbound
 * protocol streams"), counted against healthy exits. Real nodes on loopback.
 */

import { expect, it } from 'vitest'
import { useExitAndConsumer } from '../utils/in-process.ts'
import type { TunnelSocket } from '../../src/index.ts'

// the consumer supplies too, as every node does by default
const t = useExitAndConsumer({ consumerExit: { enabled: true } })

it('a node that is an exit too holds 100 tunnels to one exit at once', async () => {
  expect(t.consumer.status().exit?.enabled).toBe(true)
  const sockets: TunnelSocket[] = await Promise.all(Array.from({ length: 100 }, async () => t.consumer.connect('127.0.0.1', t.echo.port, { region: 'de' })))
  try {
    expect(sockets).toHaveLength(100)
    await expect.poll(() => t.exit.status().exit!.tunnelsOpen).toBe(100)
    // each carries its own bytes
    const echoed = await Promise.all(sockets.map(async (s, i) => new Promise<string>((resolve, reject) => {
      s.once('data', (d: Buffer) => resolve(d.toString()))
      s.once('error', reject)
      s.write(`tunnel ${i}`)
    })))
    expect(echoed).toEqual(sockets.map((_, i) => `tunnel ${i}`))
  } finally {
    for (const s of sockets) s.destroy()
  }
})
