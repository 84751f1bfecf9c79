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
import { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
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
