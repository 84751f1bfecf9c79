/**
 * max_tunnels and max_tunnels_per_consumer bound tunnels being set up (DNS,
 * the target connect) as well as open ones: a burst of requests that all
 * arrive while the first ones are still being set up is counted as it comes
 * in, and every way a tunnel can end, or fail to start, gives its place back.
 *
 * The exit's DNS is made slow (an injected resolver) so that set-ups last
 * long enough for a burst to land in them, as a real lookup and connect do.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { createServer } from 'node:net'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { TunnelRequest, TunnelStatus, sendFrame } from '../../src/relay/tunnel-protocol.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { waitFor } from '../utils/cli.ts'
import { ask, exitNode } from '../utils/exit-node.ts'
import { startBlackhole } from '../utils/target-server.ts'
import { startExitAndConsumer } from '../utils/in-process.ts'
import type { Resolver, TunnelExitInit } from '../../src/relay/exit.ts'
import type { ExitNode } from '../utils/exit-node.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { Libp2p } from '@libp2p/interface'
import type { AddressInfo, Socket } from 'node:net'

/** How long the exit's DNS takes for the slow names: far longer than a loopback connect. */
const DNS_DELAY_MS = 300

interface HoldingTarget {
  port: number
  /** Connections open now, and the most there were at once. */
  current: number
  max: number
  close: () => Promise<void>
}

/**
 * A target on 127.0.0.1 that keeps each connection open until its client
 * closes it, or answers and closes it itself after `answerAfterMs`.
 */
async function startHoldingTarget (answerAfterMs?: number): Promise<HoldingTarget> {
  const sockets = new Set<Socket>()
  const server = createServer(s => {
    sockets.add(s)
    target.current++
    target.max = Math.max(target.max, target.current)
    s.on('error', () => {})
    s.on('close', () => { sockets.delete(s); target.current-- })
    if (answerAfterMs != null) setTimeout(() => s.end('slow answer\n'), answerAfterMs)
  })
  const target: HoldingTarget = { port: 0, current: 0, max: 0, close: async () => {} }
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  target.port = (server.address() as AddressInfo).port
  target.close = async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  return target
}

/** A port on 127.0.0.1 nobody listens on: bound, noted, closed. */
async function freePort (): Promise<number> {
  const probe = createServer()
  await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>(resolve => probe.close(() => resolve()))
  return port
}

/** Slow names answer after DNS_DELAY_MS; counts lookups under way, and the most at once. */
function slowDns (names: Record<string, string[]>): Resolver & { inFlight: number, maxInFlight: number } {
  const resolver = Object.assign(async (host: string) => {
    const list = names[host]
    if (list == null) throw Object.assign(new Error(`no such name in the test: ${host}`), { code: 'ENOTFOUND' })
    resolver.inFlight++
    resolver.maxInFlight = Math.max(resolver.maxInFlight, resolver.inFlight)
    try {
      await new Promise(resolve => setTimeout(resolve, DNS_DELAY_MS))
    } finally {
      resolver.inFlight--
    }
    return list.map(address => ({ address, family: 4 }))
  }, { inFlight: 0, maxInFlight: 0 })
  return resolver
}

/** The most tunnels the exit reported set up or open at once, sampled every millisecond until stopped. */
function sampleAdmitted (exit: ExitNode): { max: () => number, stop: () => void } {
  let max = 0
  const timer = setInterval(() => {
    const s = exit.services.exit.status()
    max = Math.max(max, s.tunnelsOpen + s.tunnelsConnecting)
  }, 1)
  return { max: () => max, stop: () => clearInterval(timer) }
}

let closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.reverse()) await c()
  closers = []
})

async function setUp (limits: Pick<TunnelExitInit, 'maxTunnels' | 'maxTunnelsPerConsumer' | 'connectTimeoutMs'>, consumers = 1, extraPorts: number[] = []): Promise<{ exit: ExitNode, consumers: Libp2p[], target: HoldingTarget, dns: ReturnType<typeof slowDns> }> {
  const target = await startHoldingTarget()
  closers.push(target.close)
  const dns = slowDns({ 'slow.test.example': ['127.0.0.1'], 'denied.test.example': ['127.0.0.3'] })
  const exit = await exitNode({
    policy: { allowedPorts: [[target.port, target.port], ...extraPorts.map(p => [p, p] as [number, number])], allowPrivateTargets: true, deniedCidrs: ['127.0.0.3'] },
    resolve: dns,
    ...limits
  })
  closers.push(async () => { await exit.stop() })
  const nodes: Libp2p[] = []
  for (let i = 0; i < consumers; i++) {
    const node = await loopbackNode()
    closers.push(async () => { await node.stop() })
    // connected beforehand, so the burst's streams all go out at once on it
    await node.dial(exit.getMultiaddrs()[0])
    nodes.push(node)
  }
  return { exit, consumers: nodes, target, dns }
}

type Answer = Awaited<ReturnType<typeof ask>>

const statuses = (answers: Answer[]): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const a of answers) counts[a.status] = (counts[a.status] ?? 0) + 1
  return counts
}

/** Closes every tunnel the answers opened and waits until the exit and the target have let go of them. */
async function closeAll (exit: ExitNode, target: HoldingTarget, answers: Answer[]): Promise<void> {
  for (const a of answers) a.close()
  await waitFor(() => {
    const s = exit.services.exit.status()
    return s.tunnelsOpen === 0 && s.tunnelsConnecting === 0 && target.current === 0
  }, { timeoutMs: 10_000, what: 'the tunnels to close' })
}

describe('tunnel limits count tunnels being set up', () => {
  it('a burst from one consumer gets one tunnel at a time (1 per consumer, 2 in all)', async () => {
    const { exit, consumers: [consumer], target, dns } = await setUp({ maxTunnels: 2, maxTunnelsPerConsumer: 1 })
    const sampler = sampleAdmitted(exit)
    const answers = await Promise.all(Array.from({ length: 10 }, async () => ask(consumer, exit, 'slow.test.example', target.port)))
    sampler.stop()
    try {
      expect(statuses(answers)).toEqual({ [TunnelStatus.OK]: 1, [TunnelStatus.RATE_LIMITED]: 9 })
      expect(answers.find(a => a.status === TunnelStatus.RATE_LIMITED)?.message).toBe('too many open tunnels from this consumer')
      expect(dns.maxInFlight).toBe(1)
      expect(target.max).toBe(1)
      expect(sampler.max()).toBe(1)
    } finally {
      await closeAll(exit, target, answers)
    }
    // the slot came back when the tunnel ended
    const later = await ask(consumer, exit, 'slow.test.example', target.port)
    expect(later.status).toBe(TunnelStatus.OK)
    await closeAll(exit, target, [later])
  })

  it('bursts from two consumers get two tunnels in all, one each', async () => {
    const { exit, consumers, target, dns } = await setUp({ maxTunnels: 2, maxTunnelsPerConsumer: 1 }, 2)
    const sampler = sampleAdmitted(exit)
    const bursts = await Promise.all(consumers.map(async c => Promise.all(Array.from({ length: 10 }, async () => ask(c, exit, 'slow.test.example', target.port)))))
    sampler.stop()
    const all = bursts.flat()
    try {
      for (const burst of bursts) expect(burst.filter(a => a.status === TunnelStatus.OK)).toHaveLength(1)
      for (const a of all) expect([TunnelStatus.OK, TunnelStatus.BUSY, TunnelStatus.RATE_LIMITED]).toContain(a.status)
      expect(all.find(a => a.status === TunnelStatus.BUSY)?.message).toBe('exit at its tunnel limit')
      expect(dns.maxInFlight).toBe(2)
      expect(target.max).toBe(2)
      expect(sampler.max()).toBe(2)
    } finally {
      await closeAll(exit, target, all)
    }
  })

  it('the total limit holds for one consumer allowed more', async () => {
    const { exit, consumers: [consumer], target, dns } = await setUp({ maxTunnels: 2, maxTunnelsPerConsumer: 5 })
    const answers = await Promise.all(Array.from({ length: 10 }, async () => ask(consumer, exit, 'slow.test.example', target.port)))
    try {
      expect(statuses(answers)).toEqual({ [TunnelStatus.OK]: 2, [TunnelStatus.BUSY]: 8 })
      expect(dns.maxInFlight).toBe(2)
      expect(target.max).toBe(2)
    } finally {
      await closeAll(exit, target, answers)
    }
  })
})

describe('every failed set-up gives its slot back', () => {
  /** With one tunnel per consumer, a slot kept by any failure would refuse this one RATE_LIMITED. */
  async function getsThrough (exit: ExitNode, consumer: Libp2p, target: HoldingTarget): Promise<void> {
    const r = await ask(consumer, exit, '127.0.0.1', target.port)
    expect(r.status, r.message).toBe(TunnelStatus.OK)
    await closeAll(exit, target, [r])
  }

  it('refusals after admission, DNS failures, refused and timed-out connects', async () => {
    const refusing = await freePort()
    const blackhole = await startBlackhole()
    closers.push(blackhole.close)
    const { exit, consumers: [consumer], target } = await setUp({ maxTunnels: 2, maxTunnelsPerConsumer: 1, connectTimeoutMs: 500 }, 1, [refusing, blackhole.port])
    const failures: Array<[string, number, TunnelStatus]> = [
      ['127.0.0.1', 1, TunnelStatus.POLICY_DENIED], // a port the policy does not allow
      ['nx.test.example', target.port, TunnelStatus.DNS_FAILED],
      ['denied.test.example', target.port, TunnelStatus.POLICY_DENIED], // resolves to a denied address
      ['127.0.0.1', refusing, TunnelStatus.CONNECT_REFUSED],
      ['127.0.0.1', blackhole.port, TunnelStatus.TIMEOUT]
    ]
    for (const [host, port, status] of failures) {
      for (let i = 0; i < 3; i++) {
        const r = await ask(consumer, exit, host, port)
        expect(r.status, `${host}:${port}: ${r.message}`).toBe(status)
        // given back before the refusal was sent, not once the refused stream has closed
        expect(exit.services.exit.status()).toMatchObject({ tunnelsOpen: 0, tunnelsConnecting: 0 })
        r.close()
      }
      await getsThrough(exit, consumer, target)
    }
    expect(exit.services.exit.status()).toMatchObject({ tunnelsOpen: 0, tunnelsConnecting: 0 })
  })

  it('a consumer that goes while its tunnel is being set up', async () => {
    const { exit, consumers: [consumer], target, dns } = await setUp({ maxTunnels: 2, maxTunnelsPerConsumer: 1 })
    for (let i = 0; i < 3; i++) {
      const stream = await consumer.dialProtocol(exit.getMultiaddrs()[0], TUNNEL_PROTOCOL)
      await sendFrame(stream, TunnelRequest.encode({ sessionId: 's', targetHost: 'slow.test.example', targetPort: target.port }))
      await waitFor(() => dns.inFlight === 1, { timeoutMs: 5_000, what: 'the exit to look the name up' })
      stream.abort(new Error('the client left'))
      await waitFor(() => exit.services.exit.status().tunnelsConnecting === 0, { timeoutMs: 5_000, what: 'the set-up to end' })
    }
    await getsThrough(exit, consumer, target)
  })

  it('set-ups ended by the exit stopping, then the exit started again', async () => {
    const { exit, consumers: [consumer], target } = await setUp({ maxTunnels: 2, maxTunnelsPerConsumer: 1 })
    const pending = ask(consumer, exit, 'slow.test.example', target.port)
    await waitFor(() => exit.services.exit.status().tunnelsConnecting === 1, { timeoutMs: 5_000, what: 'the set-up to start' })
    await exit.services.exit.stop()
    expect((await pending).status).toBe(TunnelStatus.BUSY)
    await exit.services.exit.start()
    await getsThrough(exit, consumer, target)
  })
})

describe('through a consumer node, as the reviewer saw it', () => {
  it('10 requests at once from one consumer, 1 tunnel per consumer: the target never has two at once', async () => {
    // answers after 300 ms, as a slow page does; the consumer's tunnel client asks again on RATE_LIMITED
    const target = await startHoldingTarget(300)
    closers.push(target.close)
    const { exit, consumer } = await startExitAndConsumer([target.port], { exit: { max_tunnels: 2, max_tunnels_per_consumer: 1 } })
    closers.push(async () => { for (const n of [consumer, exit] as SparebandNode[]) await n.stop() })
    const results = await Promise.all(Array.from({ length: 10 }, async () => {
      try {
        const socket = await consumer.connect('127.0.0.1', target.port, { region: 'de' })
        let text = ''
        socket.on('data', (d: Buffer) => { text += d.toString() })
        await new Promise<void>((resolve, reject) => { socket.once('close', () => resolve()); socket.once('error', reject) })
        return text
      } catch (err: any) {
        return err.status ?? err.name
      }
    }))
    expect(target.max).toBe(1)
    expect(results).toContain('slow answer\n')
    for (const r of results) expect(['slow answer\n', TunnelStatus.RATE_LIMITED]).toContain(r)
  })
})
