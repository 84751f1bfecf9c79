import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { Uint8ArrayList } from 'uint8arraylist'
import { FrameAligner, ONE_MESSAGE_PAYLOAD } from '../../src/relay/frame-aligner.ts'

const bytesOf = (x: Uint8Array | Uint8ArrayList): Uint8Array => x instanceof Uint8Array ? x : x.subarray()

describe('FrameAligner', () => {
  it('fits a yamux frame in one noise message, also inside a relayed connection', () => {
    // direct: 65,519 noise plaintext bytes less the 12-byte yamux header
    const direct = 65519 - 12
    // relayed: that frame's noise message (2-byte length, 16-byte tag) and yamux header ride in one direct frame
    expect(ONE_MESSAGE_PAYLOAD + 12 + 16 + 2).toBe(direct)
    expect(ONE_MESSAGE_PAYLOAD).toBe(65477)
  })

  it('a 64 KiB read goes out as one full frame; the rest waits for the next read, then for a flush', () => {
    const a = new FrameAligner()
    const first = a.push(new Uint8Array(65536).fill(1))!
    expect(first.byteLength).toBe(65477)
    expect(a.pending).toBe(59)
    const second = a.push(new Uint8Array(65536).fill(2))!
    expect(second.byteLength).toBe(65477)
    expect(a.pending).toBe(118)
    const rest = bytesOf(a.flush()!)
    expect(rest).toEqual(new Uint8Array(118).fill(2))
    expect(a.pending).toBe(0)
    expect(a.flush()).toBeUndefined()
  })

  it('passes small writes through at once, the same bytes, when nothing is held', () => {
    const a = new FrameAligner()
    const small = new Uint8Array([1, 2, 3])
    expect(a.push(small)).toBe(small)
    expect(a.pending).toBe(0)
    const exact = new Uint8Array(65477)
    expect(a.push(exact)).toBe(exact)
  })

  it('for any writes and flushes: the same bytes in the same order, in whole frames but for passed-through writes and flushes', () => {
    const size = 100
    const op = fc.oneof(
      fc.record({ push: fc.integer({ min: 0, max: 350 }) }),
      fc.constant({ flush: true as const })
    )
    fc.assert(fc.property(fc.array(op, { maxLength: 60 }), ops => {
      const a = new FrameAligner(size)
      const input: number[] = []
      const output: number[] = []
      let next = 0
      for (const o of ops) {
        if ('push' in o) {
          const data = Uint8Array.from({ length: o.push }, () => next++ & 0xff)
          input.push(...data)
          const heldBefore = a.pending
          const out = a.push(data)
          if (out != null) {
            const b = bytesOf(out)
            // whole frames, unless the write was small and nothing was held
            if (!(heldBefore === 0 && data.byteLength < size)) expect(b.byteLength % size).toBe(0)
            output.push(...b)
          }
          expect(a.pending).toBeLessThan(size)
        } else {
          const held = a.flush()
          if (held != null) output.push(...bytesOf(held))
          expect(a.pending).toBe(0)
        }
      }
      const held = a.flush()
      if (held != null) output.push(...bytesOf(held))
      expect(output).toEqual(input)
    }))
  })
})
