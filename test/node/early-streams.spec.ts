/**
 * Streams a peer opens before this side has finished setting up the
 * connection ("early streams") are held until it has, however many: with
 * @libp2p/utils' default of 10, a consumer's burst of tunnels to an exit it
 * had just dialled ended the whole connection when the exit was slower to
 * finish its side (see nodeStreamMuxer in src/node/libp2p.ts). Two muxers
 * over an in-memory connection pair: the listening side adds its stream
 * listener only after the dialling side opened its burst.
 */

import { describe, expect, it } from 'vitest'
import { multiaddrConnectionPair } from '@libp2p/utils'
import { defaultLogger } from '@libp2p/logger'
import { yamux } from '@libp2p/yamux'
import { nodeStreamMuxer } from '../../src/node/libp2p.ts'
import type { Stream, StreamMuxer, StreamMuxerFactory } from '@libp2p/interface'

const BURST = 40

/** A dialling and a listening muxer from `factory` over one in-memory connection; the burst is opened, and a byte sent on each, before the listener looks. */
async function burst (factory: StreamMuxerFactory): Promise<{ listener: StreamMuxer, accepted: () => Promise<Stream[]> }> {
  const [outbound, inbound] = multiaddrConnectionPair()
  const dialer = factory.createStreamMuxer(outbound)
  const listener = factory.createStreamMuxer(inbound)
  const opened = await Promise.all(Array.from({ length: BURST }, async () => dialer.createStream()))
  for (const s of opened) s.send(Uint8Array.of(1))
  await new Promise(resolve => setTimeout(resolve, 100))
  return {
    listener,
    accepted: async () => new Promise(resolve => {
      const got: Stream[] = []
      listener.addEventListener('stream', e => {
        got.push(e.detail)
        if (got.length === BURST) resolve(got)
      })
    })
  }
}

describe('early streams', () => {
  it(`the node's muxer holds a burst of ${BURST} opened before its side was ready, and hands every one over`, async () => {
    const { listener, accepted } = await burst(nodeStreamMuxer()({ logger: defaultLogger() }))
    expect(listener.status).toBe('open')
    const streams = await accepted()
    expect(streams).toHaveLength(BURST)
    expect(new Set(streams.map(s => s.id)).size).toBe(BURST)
  })

  it('stock yamux ends the whole connection at the eleventh (what the node changes)', async () => {
    const { listener } = await burst(yamux()())
    expect(listener.status).not.toBe('open')
  })
})
