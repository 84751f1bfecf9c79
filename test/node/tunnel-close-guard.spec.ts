/**
 * A connection's close() waits for the tunnels on it (close-guard): those
 * live when it was asked, and any that open on it meanwhile; the connection
 * takes no new stream of ours while its close is pending; and a close with
 * a signal (libp2p.hangUp(peer, { signal })) resets what is left when the
 * signal fires, rather than waiting or cutting the tunnels with a FIN.
 * Real libp2p nodes on loopback; the tunnels are raw streams marked live
 * as the tunnel code marks them.
 */

import { afterAll, expect, it } from 'vitest'
import { loopbackNode } from '../utils/libp2p.ts'
import { waitFor } from '../utils/cli.ts'
import { guardTunnelsOnClose, isClosePending } from '../../src/node/tunnel-close-guard.ts'
import { connectionFor } from '../../src/node/open-stream.ts'
import { markLive } from '../../src/relay/live-tunnels.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

const PROTOCOL = '/test/tunnel/1.0.0'
const nodes: Libp2p[] = []
afterAll(async () => { await Promise.all(nodes.map(async n => n.stop())) })

/** Two nodes, the guard on both ends' connections; what the far end receives per stream, and how each ended. */
async function pair (): Promise<{ near: Libp2p, far: Libp2p, received: Map<number, number>, ends: Map<number, string> }> {
  const near = await loopbackNode()
  const far = await loopbackNode()
  nodes.push(near, far)
  const received = new Map<number, number>()
  const ends = new Map<number, string>()
  for (const n of [near, far]) n.addEventListener('connection:open', e => { guardTunnelsOnClose(e.detail, () => n.status === 'started', n.logger.forComponent('test')) })
  let next = 0
  await far.handle(PROTOCOL, (stream: Stream) => {
    const id = next++
    markLive(stream)
    received.set(id, 0)
    stream.addEventListener('message', e => { received.set(id, received.get(id)! + e.data.byteLength) })
    stream.addEventListener('remoteCloseWrite', () => { ends.set(id, 'FIN'); void stream.close() })
    stream.addEventListener('close', e => { if (!ends.has(id)) ends.set(id, e.error != null ? `error: ${e.error.name}` : 'closed') })
  })
  await near.dial(far.getMultiaddrs()[0])
  return { near, far, received, ends }
}

async function tunnel (near: Libp2p, far: Libp2p): Promise<Stream> {
  const [connection] = near.getConnections(far.peerId)
  const stream = await connection.newStream(PROTOCOL)
  markLive(stream)
  return stream
}

it('waits for the tunnels live when asked and for one that opened meanwhile, and takes no new stream meanwhile', async () => {
  const { near, far, received, ends } = await pair()
  const [connection] = near.getConnections(far.peerId)
  const first = await tunnel(near, far)
  first.send(new Uint8Array(1000))
  await waitFor(() => received.get(0) === 1000, { what: 'the first tunnel\'s bytes' })

  await connection.close()
  expect(connection.status).toBe('open')
  expect(isClosePending(connection)).toBe(true)
  // our streams go elsewhere (here: nowhere, so a dial) while the close is pending
  expect(connectionFor(near, far.peerId, true)).toBeUndefined()

  // one opened on it all the same (libp2p picked it): it is waited for too
  const second = await connection.newStream(PROTOCOL)
  markLive(second)
  await first.close()
  await waitFor(() => ends.get(0) === 'FIN', { what: 'the first tunnel\'s own end' })
  await new Promise(resolve => setTimeout(resolve, 200))
  expect(connection.status).toBe('open')
  second.send(new Uint8Array(5000))
  await waitFor(() => received.get(1) === 5000, { what: 'the second tunnel\'s bytes' })
  expect(ends.has(1)).toBe(false)
  await second.close()
  await waitFor(() => connection.status === 'closed', { what: 'the connection to close once both tunnels ended' })
  expect(ends.get(1)).toBe('FIN')
})

it('a close with a signal resets the tunnels left when it fires', async () => {
  const { near, far, ends } = await pair()
  const stream = await tunnel(near, far)
  stream.send(new Uint8Array(10))
  const started = Date.now()
  await near.hangUp(far.peerId, { signal: AbortSignal.timeout(300) })
  expect(Date.now() - started).toBeGreaterThanOrEqual(250)
  expect(stream.status).toBe('aborted')
  await waitFor(() => ends.get(0) != null, { what: 'the far end to see the tunnel end' })
  expect(ends.get(0)).toMatch(/^error: /)
})
