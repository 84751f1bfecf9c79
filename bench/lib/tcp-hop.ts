/**
 * What one plain loopback TCP hop costs: `total` bytes written by one
 * socket and read by another, both in this process, with nothing else done
 * to them. A tunnel adds two such hops to the libp2p stream under it (the
 * client to the consumer's proxy, the exit to the target), so the bare
 * stream's CPU plus two of these is the least a tunnel can cost.
 */

import { createServer, connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { cpuMs } from './cpu.ts'
import { CHUNK_BYTES, MiB } from './data.ts'

export async function tcpHopCpuMsPerMiB (total: number): Promise<number> {
  const chunk = Buffer.alloc(CHUNK_BYTES, 0x5a)
  let received = 0
  let done!: () => void
  const all = new Promise<void>(resolve => { done = resolve })
  const server = createServer(s => {
    s.on('data', d => { received += d.byteLength; if (received >= total) done() })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1')
  try {
    await new Promise<void>((resolve, reject) => { client.once('connect', resolve); client.once('error', reject) })
    const before = cpuMs()
    let sent = 0
    const pump = (): void => {
      while (sent < total) {
        sent += chunk.byteLength
        if (!client.write(chunk)) { client.once('drain', pump); return }
      }
    }
    pump()
    await all
    return (cpuMs() - before) / (total / MiB)
  } finally {
    client.destroy()
    server.close()
  }
}
