/**
 * A refused tunnel stream leaves the exit's connection once the refusal is
 * sent, even when the consumer never closes its side (a broken or hostile
 * client): half-closed streams otherwise stay in the connection for its
 * whole life, one per refusal. Real nodes over TCP on loopback.
 */

import { describe, it, expect, afterEach } from 'vitest'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { tunnelExit } from '../../src/relay/exit.ts'
import { TunnelRequest, TunnelStatus, decodeTunnelResponse, readFrame, sendFrame } from '../../src/relay/tunnel-protocol.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { waitFor } from '../utils/cli.ts'
import type { TunnelExit } from '../../src/relay/exit.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

describe('refused tunnel streams', () => {
  const nodes: Libp2p[] = []
  afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => n.stop())) })

  it('leave the exit\'s connection after the grace, though the consumer keeps its side open', async () => {
    const exit: Libp2p<{ exit: TunnelExit }> = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { exit: tunnelExit({ policy: { allowedPorts: [[80, 80]] } }) }
    })
    const consumer = await loopbackNode()
    nodes.push(consumer, exit)
    const exitStreams = (): number => exit.getConnections().reduce((n, c) => n + c.streams.filter(s => s.protocol === TUNNEL_PROTOCOL).length, 0)
    const held: Stream[] = []
    for (let i = 0; i < 20; i++) {
      const stream = await consumer.dialProtocol(exit.getMultiaddrs()[0], TUNNEL_PROTOCOL)
      // port 9 is not allowed: POLICY_DENIED, and this consumer never closes nor resets
      await sendFrame(stream, TunnelRequest.encode({ sessionId: '', targetHost: '127.0.0.1', targetPort: 9 }))
      const { frame } = await readFrame(stream, { timeoutMs: 5000 })
      expect(decodeTunnelResponse(frame).status).toBe(TunnelStatus.POLICY_DENIED)
      held.push(stream)
    }
    expect(exitStreams()).toBe(20)
    await waitFor(() => exitStreams() === 0, { timeoutMs: 5000, what: 'the refused streams to leave the exit\'s connection' })
    // and the consumer's end learns of it
    await waitFor(() => held.every(s => s.status !== 'open'), { timeoutMs: 2000, what: 'the consumer\'s ends to close' })
  })
})
