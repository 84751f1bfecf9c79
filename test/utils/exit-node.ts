/**
 * The exit as a libp2p service on a real node (TCP on loopback), asked by a
 * real consumer node over the raw tunnel protocol: no consumer-side retries
 * or exit selection, so a test sees exactly what the exit answered. Names
 * come from an injected resolver: no DNS.
 */

import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { nodeStreamMuxer } from '../../src/node/libp2p.ts'
import { tunnelExit } from '../../src/relay/exit.ts'
import { TunnelRequest, decodeTunnelResponse, readFrame, sendFrame } from '../../src/relay/tunnel-protocol.ts'
import type { TunnelExit, TunnelExitInit, Resolver } from '../../src/relay/exit.ts'
import type { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
import type { Libp2p } from '@libp2p/interface'

export type ExitNode = Libp2p<{ exit: TunnelExit }>

export async function exitNode (init: TunnelExitInit, announce?: string[]): Promise<ExitNode> {
  return createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'], announce },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    // the node's own muxer: a burst of streams the consumer opens as the connection comes up is held, as a node holds it
    streamMuxers: [nodeStreamMuxer()],
    services: { exit: tunnelExit(init) }
  })
}

/** Sends one tunnel request; returns the exit's answer and the stream (open after OK). */
export async function ask (consumer: Libp2p, exit: ExitNode, host: string, port: number): Promise<{ status: TunnelStatus, message: string, close: () => void }> {
  const stream = await consumer.dialProtocol(exit.getMultiaddrs()[0], TUNNEL_PROTOCOL)
  await sendFrame(stream, TunnelRequest.encode({ sessionId: 's', targetHost: host, targetPort: port }))
  const { frame } = await readFrame(stream, { timeoutMs: 30_000 })
  return { ...decodeTunnelResponse(frame), close: () => stream.abort(new Error('done')) }
}

/** A resolver for made-up names only: a lookup of anything else fails the test. */
export function fakeDns (names: Record<string, string[]>): Resolver {
  return async host => {
    const list = names[host]
    if (list == null) throw Object.assign(new Error(`no such name in the test: ${host}`), { code: 'ENOTFOUND' })
    return list.map(address => ({ address, family: address.includes(':') ? 6 : 4 }))
  }
}
