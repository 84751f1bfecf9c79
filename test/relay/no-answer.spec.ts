/**
 * An exit that takes the tunnel request and never answers (a dead or
 * cut-off exit) is the exit's failure, not the target's: the client gets a
 * timeout as for the target's TIMEOUT, but the outcome is NO_ANSWER, and
 * the operator's notice says it was not the target's answer. Before, it
 * was TIMEOUT, told as the target's (an info line, counted as TIMEOUT).
 * Real libp2p nodes on loopback; the silent exit is a bare tunnel handler.
 */

import { afterAll, beforeAll, expect, it } from 'vitest'
import { defaultLogger } from '@libp2p/logger'
import { multiaddr } from '@multiformats/multiaddr'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { Ingress, ProxyRefusal } from '../../src/relay/ingress.ts'
import { TunnelClient } from '../../src/relay/tunnel-client.ts'
import { ExitLiveness } from '../../src/relay/exit-liveness.ts'
import { NO_ANSWER, httpStatusFor, socksReplyFor } from '../../src/relay/status-codes.ts'
import { TunnelResponse, TunnelStatus, readFrame, sendFrame } from '../../src/relay/tunnel-protocol.ts'
import type { TunnelError } from '../../src/relay/tunnel-protocol.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import type { ProxyFailureNotice } from '../../src/relay/ingress.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

let consumer: Libp2p
let silent: Libp2p
const held: Stream[] = []

beforeAll(async () => {
  silent = await loopbackNode()
  // reads the request and never answers
  await silent.handle(TUNNEL_PROTOCOL, stream => { held.push(stream) })
  consumer = await loopbackNode()
  await consumer.dial(silent.getMultiaddrs()[0])
})
afterAll(async () => {
  for (const s of held) s.abort(new Error('test over'))
  await consumer?.stop()
  await silent?.stop()
})

it('an exit that never answers is NO_ANSWER, a timeout to the client and the exit\'s failure to the operator', async () => {
  const reports: Array<string | undefined> = []
  const client = new TunnelClient({
    logger: consumer.logger,
    dialProtocol: async (peer, protocol, options) => consumer.dialProtocol(peer, protocol, options)
  }, {
    selector: { candidates: async () => [silent.peerId], report: (_exit, _request, outcome) => { reports.push(outcome.status) } },
    responseTimeoutMs: 300,
    maxAttempts: 1
  })
  const notices: ProxyFailureNotice[] = []
  const ingress = new Ingress({ client, credentials: {}, log: defaultLogger().forComponent('test'), onFailure: n => notices.push(n) })

  const err = await ingress.open({ host: 'example.test', port: 443 }, {}).then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(ProxyRefusal)
  expect((err as ProxyRefusal).outcome).toBe(NO_ANSWER)
  expect((err as ProxyRefusal).exit).toBe(silent.peerId.toString())
  expect((err as ProxyRefusal).message).toBe(`exit ${silent.peerId.toString()} did not answer in time`)
  // the client's reply: a timeout, as for the target's
  expect(socksReplyFor(NO_ANSWER)).toBe(socksReplyFor(TunnelStatus.TIMEOUT))
  expect(httpStatusFor(NO_ANSWER)).toEqual(httpStatusFor(TunnelStatus.TIMEOUT))
  // the operator's: not the target's answer, counted apart from TIMEOUT
  expect(notices).toEqual([expect.objectContaining({ outcome: NO_ANSWER, fromTarget: false, exit: silent.peerId.toString() })])
  expect(ingress.stats.failedByStatus).toEqual({ [NO_ANSWER]: 1 })
  expect(reports).toEqual([NO_ANSWER])
  expect(held).toHaveLength(1)
})

it('an exit that cannot be dialled is told to the selector as unreachable (its ad may name a dead relay); a caller that gave up is not', async () => {
  // a peer nobody can reach: no address known for it anywhere
  const gone = (await loopbackNode()).peerId
  const unreachable: string[] = []
  const client = new TunnelClient({
    logger: consumer.logger,
    dialProtocol: async (peer, protocol, options) => consumer.dialProtocol(peer, protocol, options)
  }, {
    selector: { candidates: async () => [gone], report: () => {}, unreachable: exit => { unreachable.push(exit.toString()) } },
    responseTimeoutMs: 2000,
    maxAttempts: 1
  })
  const err = await client.open({ host: 'example.test', port: 443 }, {}).then(() => undefined, (e: unknown) => e)
  // no exit could be dialled: no exit (NO_EXIT to the client), not a busy one
  expect((err as Error).name).toBe('NoExitError')
  expect((err as Error).message).toMatch(/^no exit could be reached: cannot reach exit /)
  expect(unreachable).toEqual([gone.toString()])


  // a dial that hangs (a dead relay's circuit) until the response timeout: unreachable too; until
  // the caller gives up first: nothing said of the exit
  const hanging = new TunnelClient({
    logger: consumer.logger,
    dialProtocol: async (_peer, _protocol, options) => new Promise((_resolve, reject) => {
      options.signal?.addEventListener('abort', () => { reject(options.signal?.reason) }, { once: true })
    })
  }, {
    selector: { candidates: async () => [gone], report: () => {}, unreachable: exit => { unreachable.push(exit.toString()) } },
    responseTimeoutMs: 300,
    maxAttempts: 1
  })
  await expect(hanging.open({ host: 'example.test', port: 443 }, {})).rejects.toThrow(/^no exit could be reached: cannot reach exit /)
  expect(unreachable).toHaveLength(2)
  await expect(hanging.open({ host: 'example.test', port: 443 }, {}, { signal: AbortSignal.timeout(50) })).rejects.toThrow(/timeout|aborted/i)
  expect(unreachable).toHaveLength(2)
})

it('says what each of an exit\'s addresses answered when none could be dialled, not only that all failed', async () => {
  // a peer at two loopback ports nothing listens on (an exit behind NAT has a circuit and a home address, say)
  const gone = (await loopbackNode()).peerId
  await consumer.peerStore.merge(gone, { multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/1'), multiaddr('/ip4/127.0.0.1/tcp/2')] })
  const client = new TunnelClient({
    logger: consumer.logger,
    dialProtocol: async (peer, protocol, options) => consumer.dialProtocol(peer, protocol, options)
  }, { selector: { candidates: async () => [gone], report: () => {} }, responseTimeoutMs: 5000, maxAttempts: 1 })
  const err = await client.open({ host: 'example.test', port: 443 }, {}).then(() => undefined, (e: unknown) => e) as Error
  expect(err.name).toBe('NoExitError')
  expect(err.message).toMatch(/All multiaddr dials failed: .*ECONNREFUSED 127\.0\.0\.1:1.*; .*ECONNREFUSED 127\.0\.0\.1:2/)
})

/** An exit on loopback, dialled by the consumer, that reads each tunnel request and answers `status`; counts the requests. */
async function answering (status: TunnelStatus, message = ''): Promise<{ node: Libp2p, asked: () => number }> {
  const node = await loopbackNode()
  let asked = 0
  await node.handle(TUNNEL_PROTOCOL, async stream => {
    await readFrame(stream, { timeoutMs: 5000 })
    asked++
    await sendFrame(stream, TunnelResponse.encode({ status, message }))
    if (status === TunnelStatus.OK) await stream.close().catch(() => {})
  })
  await consumer.dial(node.getMultiaddrs()[0])
  return { node, asked: () => asked }
}

it('"not now" from one exit is the last word over an exit that could not be reached after it: the client waits and asks again', async () => {
  // as an exit answers a consumer past its share
  const { node: busy, asked } = await answering(TunnelStatus.RATE_LIMITED, 'too many open tunnels from this consumer')
  const gone = (await loopbackNode()).peerId
  try {
    const reports: Array<string | undefined> = []
    const client = new TunnelClient({
      logger: consumer.logger,
      dialProtocol: async (peer, protocol, options) => consumer.dialProtocol(peer, protocol, options)
    }, {
      selector: { candidates: async () => [busy.peerId, gone], report: (_exit, _request, outcome) => { reports.push(outcome.status) } },
      responseTimeoutMs: 2000,
      rateLimitedRetryMs: 1500
    })
    const err = await client.open({ host: 'example.test', port: 443 }, {}).then(() => undefined, (e: unknown) => e)
    expect((err as TunnelError).status).toBe(TunnelStatus.RATE_LIMITED)
    // the unreachable exit's word is among the earlier ones, not the last
    expect((err as Error).message).toMatch(/^too many open tunnels from this consumer \(an exit asked before: .* BUSY: cannot reach exit /)
    // asked again after waits, rather than failing at the first pass
    expect(asked()).toBeGreaterThan(1)
    expect(reports.filter(r => r === TunnelStatus.RATE_LIMITED)).toHaveLength(asked())
  } finally {
    await busy.stop()
  }
})

it('an exit that could not be dialled is asked last after that, until a tunnel through it works: the next request goes to a live one first', async () => {
  const { node: live, asked } = await answering(TunnelStatus.OK)
  const gone = (await loopbackNode()).peerId
  const liveness = new ExitLiveness({ log: consumer.logger.forComponent('test'), ping: async () => false, heardSince: () => false, drop: () => {} })
  try {
    // ranked first, the dead one; one attempt a request, so the ranking alone decides
    const client = new TunnelClient({
      logger: consumer.logger,
      dialProtocol: async (peer, protocol, options) => consumer.dialProtocol(peer, protocol, options)
    }, {
      selector: { candidates: async () => [gone, live.peerId], report: () => {} },
      liveness,
      responseTimeoutMs: 2000,
      maxAttempts: 1
    })
    const first = await client.open({ host: 'example.test', port: 443 }, {}).then(() => undefined, (e: unknown) => e)
    expect((first as Error).name).toBe('NoExitError')
    expect(liveness.avoided(gone)).toBe(true)
    const second = await client.open({ host: 'example.test', port: 443 }, {})
    expect(second.exit.equals(live.peerId)).toBe(true)
    second.stream.abort(new Error('test over'))
    expect(asked()).toBe(1)
  } finally {
    liveness.stop()
    await live.stop()
  }
})
