import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer } from 'node:net'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { tunnelExit } from '../../src/relay/exit.ts'
import { TunnelRequest, TunnelStatus, decodeTunnelResponse, readFrame, sendFrame } from '../../src/relay/tunnel-protocol.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import type { TunnelExit, TunnelExitInit, Resolver } from '../../src/relay/exit.ts'
import type { Libp2p } from '@libp2p/interface'
import type { AddressInfo, Server, Socket } from 'node:net'

/**
 * The exit as a libp2p service on a real node (TCP on loopback), asked by a
 * real consumer node. Names come from an injected resolver: no DNS, and
 * every address in these tests is a loopback one.
 */

type ExitNode = Libp2p<{ exit: TunnelExit }>

async function exitNode (init: TunnelExitInit): Promise<ExitNode> {
  return createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { exit: tunnelExit(init) }
  })
}

/** Sends one tunnel request; returns the exit's answer and the stream (open after OK). */
async function ask (consumer: Libp2p, exit: ExitNode, host: string, port: number): Promise<{ status: TunnelStatus, message: string, close: () => void }> {
  const stream = await consumer.dialProtocol(exit.getMultiaddrs()[0], TUNNEL_PROTOCOL)
  await sendFrame(stream, TunnelRequest.encode({ sessionId: 's', targetHost: host, targetPort: port }))
  const { frame } = await readFrame(stream, { timeoutMs: 30_000 })
  return { ...decodeTunnelResponse(frame), close: () => stream.abort(new Error('done')) }
}

/** A resolver for made-up names only: a lookup of anything else fails the test. */
function fakeDns (names: Record<string, string[]>): Resolver {
  return async host => {
    const list = names[host]
    if (list == null) throw Object.assign(new Error(`no such name in the test: ${host}`), { code: 'ENOTFOUND' })
    return list.map(address => ({ address, family: address.includes(':') ? 6 : 4 }))
  }
}

describe('the exit dials every allowed address of a name, in order', () => {
  let target: Server
  let port: number
  let freePort: number
  const accepted: Socket[] = []
  let consumer: Libp2p
  let exit: ExitNode

  beforeAll(async () => {
    // the target listens on 127.0.0.1 only: ::1 and 127.0.0.2 refuse on its port
    target = createServer(s => { accepted.push(s); s.on('error', () => {}); s.end('hi\n') })
    await new Promise<void>(resolve => target.listen(0, '127.0.0.1', resolve))
    port = (target.address() as AddressInfo).port
    // a port nobody listens on: bind, note, close
    const probe = createServer()
    await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
    freePort = (probe.address() as AddressInfo).port
    await new Promise<void>(resolve => probe.close(() => resolve()))
    exit = await exitNode({
      policy: { allowedPorts: [[port, port], [freePort, freePort]], allowPrivateTargets: true, deniedCidrs: ['127.0.0.3'] },
      connectTimeoutMs: 5_000,
      resolve: fakeDns({
        'v6-first.test.example': ['::1', '127.0.0.1'],
        'v4-first.test.example': ['127.0.0.1', '::1'],
        'mixed.test.example': ['127.0.0.3', '127.0.0.2', '127.0.0.1'],
        'none.test.example': ['::1', '127.0.0.2'],
        'denied.test.example': ['127.0.0.3']
      })
    })
    consumer = await loopbackNode()
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    target?.close()
  })

  const opened = (): Promise<string> => new Promise(resolve => {
    exit.services.exit.addEventListener('exit:tunnel:open', e => resolve(e.detail.address), { once: true })
  })

  it('goes on to the next address when the first refuses', async () => {
    const address = opened()
    const before = accepted.length
    const r = await ask(consumer, exit, 'v6-first.test.example', port)
    expect(r.status).toBe(TunnelStatus.OK)
    expect(await address).toBe('127.0.0.1')
    expect(accepted.length).toBe(before + 1)
    r.close()
  })

  it('takes the first address when it answers', async () => {
    const address = opened()
    const r = await ask(consumer, exit, 'v4-first.test.example', port)
    expect(r.status).toBe(TunnelStatus.OK)
    expect(await address).toBe('127.0.0.1')
    r.close()
  })

  it('skips addresses the policy denies and tries the rest in order', async () => {
    const address = opened()
    const r = await ask(consumer, exit, 'mixed.test.example', port)
    expect(r.status).toBe(TunnelStatus.OK)
    expect(await address).toBe('127.0.0.1')
    r.close()
  })

  it('reports the last error when no address answers', async () => {
    const r = await ask(consumer, exit, 'none.test.example', freePort)
    expect(r.status).toBe(TunnelStatus.CONNECT_REFUSED)
    expect(r.message).toBe(`none.test.example:${freePort}: ECONNREFUSED (tried 2 addresses)`)
  })

  it('still refuses a name whose every address is denied, naming the first reason', async () => {
    const r = await ask(consumer, exit, 'denied.test.example', port)
    expect(r.status).toBe(TunnelStatus.POLICY_DENIED)
    expect(r.message).toBe('denied.test.example resolves to 127.0.0.3 is in a denied range (127.0.0.3)')
  })
})
