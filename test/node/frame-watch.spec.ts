/**
 * The frame watch follows multistream-select and the agreed protocol's
 * framing byte by byte, and refuses only a length prefix longer than any
 * frame needs, where it knows a prefix must be. Whatever the chunking, an
 * honest exchange is never refused; a flood of "more follows" bytes is, at
 * once.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { FrameWatch, LP_PREFIX_BYTES, MSS_PREFIX_BYTES } from '../../src/node/frame-watch.ts'
import type { FrameWatchInit, Framing, Verdict } from '../../src/node/frame-watch.ts'
import { libp2pFraming } from '../../src/node/frame-guard.ts'
import { HEADER, flood, frame, line } from '../utils/framing.ts'

function inbound (accepted: string[], framing: Record<string, Framing> = {}): FrameWatchInit {
  return { role: 'inbound', accepts: p => accepted.includes(p), framingOf: p => framing[p] ?? 'raw' }
}

/** Feeds `bytes` in the given chunk sizes (cycled); the last verdict that was not 'watching', or the last. */
function feedChunked (watch: FrameWatch, bytes: Uint8Array, sizes: number[] = [bytes.byteLength]): Verdict {
  let at = 0
  let k = 0
  let verdict: Verdict = { state: 'watching' }
  while (at < bytes.byteLength) {
    const n = Math.max(1, sizes[k++ % sizes.length])
    verdict = watch.feed(bytes.subarray(at, at + n))
    at += n
    if (verdict.state !== 'watching') return verdict
  }
  return verdict
}

describe('the frame watch', () => {
  it('refuses a flood of "more follows" bytes in negotiation at the byte past two of prefix, before or after the header', () => {
    for (const start of [new Uint8Array(0), HEADER]) {
      const watch = new FrameWatch(inbound(['/a']))
      expect(watch.feed(start)).toEqual({ state: 'watching' })
      expect(watch.feed(flood(MSS_PREFIX_BYTES - 1))).toEqual({ state: 'watching' })
      const verdict = watch.feed(flood(1))
      expect(verdict).toMatchObject({ state: 'refused', reason: 'a length prefix longer than 2 bytes in protocol negotiation' })
      expect(watch.watching).toBe(false)
    }
  })

  it('lets a two-byte prefix through in negotiation (a long protocol name it does not take), then follows on', () => {
    const long = `/${'x'.repeat(300)}`
    const watch = new FrameWatch(inbound(['/a']))
    expect(line(long)[1] & 0x80).toBe(0)
    expect(line(long)[0] & 0x80).toBe(0x80)
    expect(feedChunked(watch, Buffer.concat([HEADER, line('ls'), line(long), line('/a')]), [1])).toEqual({ state: 'done' })
  })

  it('stops at the protocol it takes when that protocol is raw: what follows is never judged', () => {
    const watch = new FrameWatch(inbound(['/spareband/tunnel/1.0.0']))
    expect(watch.feed(Buffer.concat([HEADER, line('/spareband/tunnel/1.0.0'), flood(64)]))).toEqual({ state: 'done' })
  })

  it('follows a length-prefixed protocol frame by frame: five bytes of prefix pass, a sixth refuses, naming the protocol', () => {
    const watch = new FrameWatch(inbound(['/ipfs/kad/1.0.0'], { '/ipfs/kad/1.0.0': 'length-prefixed' }))
    // a body full of 0xff is payload, skipped by its length, not read as a prefix
    const honest = Buffer.concat([HEADER, line('/ipfs/kad/1.0.0'), frame(flood(300)), frame(new Uint8Array(0)), frame(flood(20000))])
    expect(feedChunked(watch, honest, [3, 1, 7])).toEqual({ state: 'watching' })
    // a prefix of five bytes (a huge length the reader refuses itself): the watch lets it be
    const five = new FrameWatch(inbound(['/p'], { '/p': 'length-prefixed' }))
    expect(five.feed(Buffer.concat([HEADER, line('/p'), flood(LP_PREFIX_BYTES - 1), Uint8Array.of(0x01)]))).toEqual({ state: 'watching' })
    expect(watch.feed(flood(LP_PREFIX_BYTES))).toMatchObject({ state: 'refused', protocol: '/ipfs/kad/1.0.0', reason: 'a length prefix longer than 5 bytes on /ipfs/kad/1.0.0' })
  })

  it('follows only the first frame of a protocol that turns raw after it (a circuit relay)', () => {
    const watch = new FrameWatch(inbound(['/r'], { '/r': 'first-frame' }))
    expect(watch.feed(Buffer.concat([HEADER, line('/r')]))).toEqual({ state: 'watching' })
    expect(watch.feed(frame(Uint8Array.of(1, 2, 3)))).toEqual({ state: 'done' })
    expect(watch.feed(flood(64))).toEqual({ state: 'done' })
  })

  it('as the side that proposed, takes the peer\'s answers to its proposals in turn: "na" and other answers go on, the proposal echoed is agreed', () => {
    const outbound = (): FrameWatch => new FrameWatch({ role: 'outbound', accepts: () => false, framingOf: p => p.startsWith('/meshsub/') ? 'length-prefixed' : 'raw' })
    const watch = outbound()
    // what select() sends: the header with the first proposal, then the next after each refusal
    watch.sent(Buffer.concat([HEADER, line('/meshsub/1.2.0')]))
    expect(watch.feed(Buffer.concat([HEADER, line('na')]))).toEqual({ state: 'watching' })
    watch.sent(line('/meshsub/1.1.0'))
    // an answer that is neither "na" nor the proposal: select() proposes the next, so still negotiation
    expect(watch.feed(line('/something/else'))).toEqual({ state: 'watching' })
    expect(watch.negotiating).toBe(true)
    watch.sent(line('/meshsub/1.0.0'))
    expect(watch.feed(line('/meshsub/1.0.0'))).toEqual({ state: 'watching' })
    expect(watch.negotiating).toBe(false)
    expect(watch.feed(flood(LP_PREFIX_BYTES))).toMatchObject({ state: 'refused', protocol: '/meshsub/1.0.0' })

    // a peer that answers ahead, a proposal not made yet: no honest peer does, and select() would take it for the
    // answer to that proposal once made, while what follows it was judged as negotiation: refused at once
    const ahead = outbound()
    ahead.sent(Buffer.concat([HEADER, line('/meshsub/1.2.0')]))
    expect(ahead.feed(Buffer.concat([HEADER, line('x'), line('/meshsub/1.1.0'), frame(Uint8Array.of(1, 2))]))).toMatchObject({ state: 'refused', reason: 'an answer to a protocol not proposed yet in protocol negotiation' })

    // an answer that is not the header first: select() gives up on the stream
    const noHeader = outbound()
    noHeader.sent(Buffer.concat([HEADER, line('/meshsub/1.2.0')]))
    expect(noHeader.feed(Buffer.concat([line('/meshsub/1.2.0'), flood(64)]))).toEqual({ state: 'done' })
  })

  it('as the side that answers, reads on past a first line that is not the header, as handle() does', () => {
    const watch = new FrameWatch(inbound(['/a']))
    expect(watch.feed(line('/not-the-header'))).toEqual({ state: 'watching' })
    expect(watch.feed(flood(2))).toMatchObject({ state: 'refused', reason: 'a length prefix longer than 2 bytes in protocol negotiation' })
    // and takes a proposal without any header at all
    const bare = new FrameWatch(inbound(['/p'], { '/p': 'length-prefixed' }))
    expect(bare.feed(line('/p'))).toEqual({ state: 'watching' })
    expect(bare.negotiating).toBe(false)
  })

  it('takes a line as the reader does, trailing white space trimmed; a frame without its newline ends the negotiation (the reader refuses it)', () => {
    const watch = new FrameWatch(inbound(['/p'], { '/p': 'length-prefixed' }))
    expect(watch.feed(Buffer.concat([HEADER, frame(Buffer.from('/p\r\n'))]))).toEqual({ state: 'watching' })
    expect(watch.negotiating).toBe(false)
    const broken = new FrameWatch(inbound(['/p']))
    expect(broken.feed(Buffer.concat([HEADER, frame(Buffer.from('/p'))]))).toEqual({ state: 'done' })
  })

  it('never refuses an honest exchange, however it is cut into chunks; refuses a flood after it at once', () => {
    const protocols = ['/ipfs/id/1.0.0', '/meshsub/1.1.0', '/libp2p/circuit/relay/0.2.0/hop', '/spareband/tunnel/1.0.0']
    const framingOf = libp2pFraming()
    fc.assert(fc.property(
      fc.constantFrom(...protocols),
      fc.array(fc.string({ maxLength: 40 }).map(s => `/${s.replace(/\n/g, '')}`), { maxLength: 3 }),
      fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 8 }),
      (agreed, refusedFirst, bodies, sizes) => {
        const init: FrameWatchInit = { role: 'inbound', accepts: p => p === agreed, framingOf }
        const honest = Buffer.concat([HEADER, ...refusedFirst.filter(p => p !== agreed).map(line), line(agreed), ...bodies.map(frame)])
        const watch = new FrameWatch(init)
        const verdict = feedChunked(watch, honest, sizes)
        expect(verdict.state).not.toBe('refused')
        const after = watch.feed(flood(LP_PREFIX_BYTES))
        // judged only where the protocol is length-prefixed throughout (a relay's first frame may still be coming)
        if (framingOf(agreed) === 'length-prefixed') expect(after.state).toBe('refused')
        if (framingOf(agreed) === 'raw') expect(after.state).toBe('done')
      }
    ), { numRuns: 300 })
  })
})

describe('the frame watch on the side that proposes', () => {
  it('never refuses an honest select(): proposals refused with "na" one by one, then one echoed, then its frames, however cut', () => {
    const framingOf = libp2pFraming()
    fc.assert(fc.property(
      fc.array(fc.constantFrom('/meshsub/1.2.0', '/meshsub/1.1.0', '/ipfs/id/1.0.0', '/libp2p/circuit/relay/0.2.0/hop', '/spareband/tunnel/1.0.0'), { minLength: 1, maxLength: 3 }),
      fc.nat(),
      fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 8 }),
      (proposals, pick, bodies, sizes) => {
        const agreedAt = pick % proposals.length
        const watch = new FrameWatch({ role: 'outbound', accepts: () => false, framingOf })
        let verdict: Verdict = { state: 'watching' }
        for (let i = 0; i <= agreedAt && verdict.state === 'watching'; i++) {
          watch.sent(i === 0 ? Buffer.concat([HEADER, line(proposals[i])]) : line(proposals[i]))
          const answer = i === agreedAt ? line(proposals[i]) : line('na')
          verdict = feedChunked(watch, i === 0 ? Buffer.concat([HEADER, answer]) : answer, sizes)
        }
        const agreed = proposals[agreedAt]
        if (verdict.state === 'watching') verdict = feedChunked(watch, Buffer.concat(bodies.map(frame)), sizes)
        expect(verdict.state).not.toBe('refused')
        if (framingOf(agreed) === 'length-prefixed') expect(watch.feed(flood(LP_PREFIX_BYTES)).state).toBe('refused')
        if (framingOf(agreed) === 'raw') expect(watch.feed(flood(LP_PREFIX_BYTES)).state).toBe('done')
      }
    ), { numRuns: 300 })
  })
})

describe('libp2p\'s framing', () => {
  it('knows which protocols are length-prefixed throughout, which in their first frame only, and takes the DHT protocol given', () => {
    const framingOf = libp2pFraming(['/spareband-test/dht'])
    for (const p of ['/ipfs/id/1.0.0', '/ipfs/id/push/1.0.0', '/ipfs/kad/1.0.0', '/spareband/kad/1.0.0', '/libp2p/autonat/1.0.0', '/libp2p/autonat/2/dial-request', '/libp2p/dcutr', '/meshsub/1.2.0', '/floodsub/1.0.0', '/webrtc-signaling/0.0.1', '/spareband-test/dht']) {
      expect(framingOf(p), p).toBe('length-prefixed')
    }
    expect(framingOf('/libp2p/circuit/relay/0.2.0/hop')).toBe('first-frame')
    expect(framingOf('/libp2p/circuit/relay/0.2.0/stop')).toBe('first-frame')
    for (const p of ['/ipfs/ping/1.0.0', '/spareband/tunnel/1.0.0', '/spareband/receipt/1.0.0', '/noise', '/yamux/1.0.0']) expect(framingOf(p), p).toBe('raw')
  })
})
