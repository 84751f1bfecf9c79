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
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { Ingress, ProxyRefusal } from '../../src/relay/ingress.ts'
import { TunnelClient } from '../../src/relay/tunnel-client.ts'
import { NO_ANSWER, httpStatusFor, socksReplyFor } from '../../src/relay/status-codes.ts'
import { TunnelError, TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
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
  expect((err as TunnelError).status).toBe(TunnelStatus.BUSY)
  expect((err as Error).message).toMatch(/^cannot reach exit /)
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
  await expect(hanging.open({ host: 'example.test', port: 443 }, {})).rejects.toThrow(/^cannot reach exit /)
  expect(unreachable).toHaveLength(2)
  await expect(hanging.open({ host: 'example.test', port: 443 }, {}, { signal: AbortSignal.timeout(50) })).rejects.toThrow(/timeout|aborted/i)
  expect(unreachable).toHaveLength(2)
})
