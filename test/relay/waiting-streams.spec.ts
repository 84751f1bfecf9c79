/**
 * Tunnel streams that never send their request are bounded: a consumer may
 * keep at most as many waiting as it may have tunnels (64 at least), all
 * consumers together as many as the exit takes tunnels (1024 at least);
 * past that the oldest waiting ones are let go, answered as a request over
 * the limit would be (RATE_LIMITED past the consumer's share, BUSY past the
 * total: its node waits or asks another exit, where a reset read as a
 * broken exit) and closed, and the exit goes on serving the rest. Real libp2p nodes over TCP on loopback; the requests that are
 * sent target loopback, which the default policy refuses, so nothing is
 * dialled.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { TunnelRequest, TunnelStatus, decodeTunnelResponse, readFrame, sendFrame } from '../../src/relay/tunnel-protocol.ts'
import { MIN_WAITING, MIN_WAITING_PER_CONSUMER } from '../../src/relay/waiting-streams.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { waitFor } from '../utils/cli.ts'
import { exitNode } from '../utils/exit-node.ts'
import type { ExitNode } from '../utils/exit-node.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

const nodes: Libp2p[] = []
/** Streams opened at once; each batch is seen whole by the exit before the next is opened. */
const BATCH = 32

afterEach(async () => {
  await Promise.all(nodes.splice(0).map(async n => n.stop()))
})

/**
 * `n` tunnel streams from `consumer` that send nothing, opened in batches
 * (each batch is older at the exit than the next), after `seen` streams the
 * exit got before.
 */
async function openIdle (consumer: Libp2p, exit: ExitNode, n: number, seen = 0): Promise<Stream[]> {
  const streams: Stream[] = []
  // in batches, each waited for: the exit sees them in this order
  for (let i = 0; i < n; i += BATCH) {
    // a stream may be reset while it is still being opened (over a limit, as the oldest of whoever has
    // the most waiting): it is no stream of the caller's then, and the exit counted it as reset
    const batch = await Promise.allSettled(Array.from({ length: Math.min(BATCH, n - i) }, async () =>
      consumer.dialProtocol(exit.getMultiaddrs()[0], TUNNEL_PROTOCOL, { maxOutboundStreams: 4096 })))
    const rejected = batch.flatMap(r => r.status === 'rejected' ? [r.reason as Error] : [])
    const failed = rejected.length
    seen += failed
    streams.push(...batch.flatMap(r => r.status === 'fulfilled' ? [r.value] : []))
    const arrived = (): number => exit.services.exit.status().streamsWaiting + exit.services.exit.status().streamsWaitingReset
    // 30 s: a batch took over 10 s to be seen when the whole suite loaded the two cores
    await waitFor(() => {
      // the last of these goes in the timeout's message
      if (arrived() < seen + streams.length) throw new Error(`the exit saw ${arrived()} of ${seen + streams.length} (${failed} opens of this batch failed${failed > 0 ? `, the first with ${rejected[0].name}: ${rejected[0].message}` : ''})`)
      return true
    }, {
      timeoutMs: 30_000,
      what: `the exit to see batch ${i / BATCH + 1}`
    })
  }
  return streams
}

/** Sends a request for a loopback target on `stream`: the default policy answers POLICY_DENIED, which shows the exit read it. */
async function askOn (stream: Stream): Promise<TunnelStatus> {
  await sendFrame(stream, TunnelRequest.encode({ sessionId: 's', targetHost: '127.0.0.1', targetPort: 443 }))
  const { frame } = await readFrame(stream, { timeoutMs: 10_000 })
  return decodeTunnelResponse(frame).status
}

/** Let go by the exit: answered and closed (its side closed, then reset after the grace), or reset. */
const letGo = (s: Stream): boolean => s.status !== 'open' || s.remoteWriteStatus !== 'writable'

/**
 * The answer on a stream the exit lets go, or undefined for one it did not
 * answer before `signal` aborted. Read from before the exit lets go of it:
 * it resets one that keeps its side open half a second after the answer.
 */
async function answerOn (stream: Stream, signal: AbortSignal): Promise<TunnelStatus | undefined> {
  try {
    return decodeTunnelResponse((await readFrame(stream, { timeoutMs: 60_000, signal })).frame).status
  } catch {
    return undefined
  }
}

describe('tunnel streams waiting for their request', () => {
  it(`a consumer keeps at most ${MIN_WAITING_PER_CONSUMER} (its tunnel limit, at least that): its oldest are answered RATE_LIMITED and closed, the rest still serve`, async () => {
    const exit = await exitNode({ policy: { allowedPorts: [[443, 443]] }, maxTunnelsPerConsumer: 8 })
    const consumer = await loopbackNode()
    nodes.push(exit, consumer)
    // the first batch sends the start of a request and no more (a slow peer, or one that stalls on purpose)
    const streams = await openIdle(consumer, exit, BATCH)
    for (const stream of streams) stream.send(Uint8Array.from([40, 0x0a, 0x0b]))
    const reading = new AbortController()
    const firstAnswers = streams.map(async st => answerOn(st, reading.signal))
    await new Promise(resolve => setTimeout(resolve, 200))
    streams.push(...await openIdle(consumer, exit, MIN_WAITING_PER_CONSUMER + 6 - BATCH, BATCH))

    const s = exit.services.exit.status()
    expect(s.streamsWaiting).toBe(MIN_WAITING_PER_CONSUMER)
    expect(s.streamsWaitingReset).toBe(6)
    // six of the oldest (the first batch: the exit may see a batch's streams in any order), and only they, are let go
    await waitFor(() => streams.filter(letGo).length + (MIN_WAITING_PER_CONSUMER + 6 - streams.length) === 6, { timeoutMs: 5000 })
    expect(streams.slice(BATCH).filter(letGo)).toHaveLength(0)
    // each with the answer its node waits on: over its share of the exit
    // each let go was answered before it closed: the reads of the others can stop
    reading.abort()
    const answers = await Promise.all(firstAnswers)
    expect(answers.filter(a => a === TunnelStatus.RATE_LIMITED)).toHaveLength(streams.filter(letGo).length)
    expect(answers.filter(a => a !== undefined && a !== TunnelStatus.RATE_LIMITED)).toEqual([])
    // no tunnel refused, even of a stream that had sent part of its request: nothing was denied
    expect(exit.services.exit.status().denied).toBe(0)
    // the newest and the oldest idle survivor still take a request
    expect(await askOn(streams[streams.length - 1])).toBe(TunnelStatus.POLICY_DENIED)
    expect(await askOn(streams[BATCH])).toBe(TunnelStatus.POLICY_DENIED)
    await waitFor(() => exit.services.exit.status().streamsWaiting === MIN_WAITING_PER_CONSUMER - 2, { timeoutMs: 5000 })
  })

  it(`all consumers together keep at most ${MIN_WAITING} (the exit's tunnel limit, at least that): the oldest of whoever has the most go first`, async () => {
    const exit = await exitNode({ policy: { allowedPorts: [[443, 443]] }, maxTunnelsPerConsumer: 4096 })
    const first = await loopbackNode()
    const second = await loopbackNode()
    nodes.push(exit, first, second)
    const half = MIN_WAITING / 2
    const olderFirst = await openIdle(first, exit, BATCH)
    const reading = new AbortController()
    const firstAnswers = olderFirst.map(async st => answerOn(st, reading.signal))
    const older = [...olderFirst, ...await openIdle(first, exit, half + 10 - BATCH, BATCH)]
    const newerFirst = await openIdle(second, exit, BATCH, older.length)
    firstAnswers.push(...newerFirst.map(async st => answerOn(st, reading.signal)))
    const newer = [...newerFirst, ...await openIdle(second, exit, half + 10 - BATCH, older.length + BATCH)]

    const s = exit.services.exit.status()
    expect(s.streamsWaiting).toBe(MIN_WAITING)
    expect(s.streamsWaitingReset).toBe(2 * (half + 10) - MIN_WAITING)
    // the first consumer had the most until the second caught up: both lost their oldest (ten each when
    // every open went through), not the newcomer all of its own
    await waitFor(() => older.filter(letGo).length + newer.filter(letGo).length + (2 * (half + 10) - older.length - newer.length) === 20, { timeoutMs: 5000 })
    expect(older.filter(letGo).length).toBeGreaterThan(0)
    expect(newer.filter(letGo).length).toBeGreaterThan(0)
    expect(older.slice(BATCH).filter(letGo)).toHaveLength(0)
    expect(newer.slice(BATCH).filter(letGo)).toHaveLength(0)
    // over the exit's total, not their own share: BUSY, so their nodes ask another exit
    reading.abort()
    const answered = (await Promise.all(firstAnswers)).filter(a => a !== undefined)
    expect(answered.length).toBe([...olderFirst, ...newerFirst].filter(letGo).length)
    expect(answered.every(a => a === TunnelStatus.BUSY)).toBe(true)
    expect(await askOn(newer.at(-1)!)).toBe(TunnelStatus.POLICY_DENIED)
  }, 60_000)

  it('a flood from fresh identities takes their own streams, not another consumer\'s warm ones', async () => {
    const exit = await exitNode({ policy: { allowedPorts: [[443, 443]] }, maxTunnelsPerConsumer: 4096 })
    const honest = await loopbackNode()
    const floods = [await loopbackNode(), await loopbackNode()]
    nodes.push(exit, honest, ...floods)
    const warm = await openIdle(honest, exit, 8)
    // 600 streams from each flooding identity; some are reset while still being opened (they are the
    // oldest of whoever has the most waiting), so a failed open is part of the flood, not of the test
    for (const flood of floods) {
      for (let i = 0; i < 600; i += BATCH) {
        await Promise.allSettled(Array.from({ length: Math.min(BATCH, 600 - i) }, async () =>
          flood.dialProtocol(exit.getMultiaddrs()[0], TUNNEL_PROTOCOL, { maxOutboundStreams: 4096 })))
      }
    }
    // over the total, the floods' own oldest went (how many of their opens got through varies with the load)
    await waitFor(() => exit.services.exit.status().streamsWaitingReset > 0, { timeoutMs: 10_000, what: 'resets at the exit\'s total' })
    expect(exit.services.exit.status().streamsWaiting).toBeLessThanOrEqual(MIN_WAITING)
    // the honest consumer's eight warm streams are all there, and take a request
    expect(warm.filter(letGo)).toHaveLength(0)
    expect(await askOn(warm[0])).toBe(TunnelStatus.POLICY_DENIED)
  }, 60_000)

  it('stop() closes the waiting streams and forgets them', async () => {
    const exit = await exitNode({ policy: { allowedPorts: [[443, 443]] } })
    const consumer = await loopbackNode()
    nodes.push(consumer)
    const streams = await openIdle(consumer, exit, 5)
    expect(exit.services.exit.status().streamsWaiting).toBe(5)
    await exit.stop()
    expect(exit.services.exit.status().streamsWaiting).toBe(0)
    expect(exit.services.exit.status().streamsWaitingReset).toBe(0)
    await waitFor(() => streams.every(s => s.status !== 'open'), { timeoutMs: 5000 })
  })
})
