/**
 * The credit at risk with many tunnels: a consumer that never signs a
 * receipt opens 64 tunnels at once to a server that streams without end.
 * However many tunnels it has, the exit must stop carrying its traffic near
 * the unsigned threshold (4 MiB), not one chunk per tunnel past it. A real
 * exit node, a raw libp2p client speaking the tunnel protocol, TCP loopback.
 */

import { createServer } from 'node:net'
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { TunnelRequest, encodeFrame } from '../../src/relay/tunnel-protocol.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { AddressInfo, Server, Socket } from 'node:net'

const MiB = 1024 * 1024
const TUNNELS = 64
const THRESHOLD = 4 * MiB

describe('unsigned threshold with many tunnels', () => {
  let firehose: Server
  const sockets = new Set<Socket>()
  let port: number
  let exit: SparebandNode
  let client: Libp2p

  beforeAll(async () => {
    const chunk = Buffer.alloc(256 * 1024, 7)
    // streams for as long as it may, once asked
    firehose = createServer(s => {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => sockets.delete(s))
      const pump = (): void => { while (s.writable && s.write(chunk)) {} }
      s.on('drain', pump)
      s.once('data', pump)
    })
    await new Promise<void>(resolve => firehose.listen(0, '127.0.0.1', resolve))
    port = (firehose.address() as AddressInfo).port
    exit = await createSparebandNode({
      dataDir: await tempDir('sb-threshold-exit-'),
      controlApi: false,
      config: {
        region: 'de',
        listen: ['/ip4/127.0.0.1/tcp/0'],
        proxy: { socks_port: 0, http_port: 0 },
        network: { local_testnet: true },
        exit: { allow_private_targets: true, allowed_ports: [port] },
        // the consumer has no proof of work and signs nothing: let it in on credit, to see where it is stopped
        accounting: { credit_limit: -1000 }
      }
    })
    await exit.start()
    client = await loopbackNode()
    await client.dial(exit.libp2p.getMultiaddrs()[0])
  })
  afterAll(async () => {
    await client?.stop()
    await exit?.stop()
    for (const s of sockets) s.destroy()
    firehose?.close()
  })

  it('carries about the threshold to a consumer that never signs, not a chunk per tunnel more', async () => {
    let received = 0
    const streams: Stream[] = []
    for (let i = 0; i < TUNNELS; i++) {
      const stream = await client.dialProtocol(exit.peerId, TUNNEL_PROTOCOL)
      stream.addEventListener('message', evt => { received += evt.data.byteLength })
      stream.send(encodeFrame(TunnelRequest.encode({ sessionId: 'never-signs', targetHost: '127.0.0.1', targetPort: port })))
      streams.push(stream)
    }
    await waitFor(() => sockets.size === TUNNELS, { what: `${TUNNELS} tunnels open at the server` })
    // all at once: every tunnel starts streaming
    for (const s of streams) s.send(new TextEncoder().encode('go'))
    await waitFor(() => received > MiB, { what: 'data to flow' })
    // then until nothing more arrives for two seconds
    let last = -1
    while (received !== last) {
      last = received
      await new Promise(resolve => setTimeout(resolve, 2000))
    }
    // the tunnel responses are a few bytes; what a held tunnel may still send is its frame remainder
    expect(received).toBeGreaterThan(THRESHOLD - MiB)
    expect(received).toBeLessThan(THRESHOLD + MiB)
    const pending = (exit.status() as any).accounting.pending
    expect(pending.carriedUnsignedBytes).toBeLessThan(THRESHOLD + MiB)
    for (const s of streams) s.abort(new Error('done'))
  })
})
