import { describe, it, expect } from 'vitest'
import { ChunkGate } from '../../src/relay/chunk-gate.ts'
import type { Chunk } from '../../src/relay/chunk-gate.ts'

/** A gate whose check says wait while `budget` is below the chunk, with a release the test controls. */
function harness (budget: number) {
  const forwarded: number[] = []
  const events: string[] = []
  let release: (() => void) | undefined
  let closed = false
  const state = { budget }
  const gate = new ChunkGate({
    check: bytes => {
      if (bytes <= state.budget) return undefined
      return new Promise<void>(resolve => { release = resolve })
    },
    forward: (chunk: Chunk) => {
      state.budget -= chunk.byteLength
      forwarded.push(chunk.byteLength)
    },
    pause: () => events.push('pause'),
    resume: () => events.push('resume'),
    closed: () => closed
  })
  return { gate, forwarded, events, state, release: () => release?.(), close: () => { closed = true } }
}

const tick = async (): Promise<void> => new Promise(resolve => setImmediate(resolve))

describe('ChunkGate', () => {
  it('lets chunks through while the check allows, holds the rest in order, and asks again on release', async () => {
    const h = harness(10)
    h.gate.push(new Uint8Array(6))
    h.gate.push(new Uint8Array(6)) // over: held, source paused
    h.gate.push(new Uint8Array(1)) // behind the held one, though it would fit
    expect(h.forwarded).toEqual([6])
    expect(h.events).toEqual(['pause'])
    // a release that does not make room: still held, still paused
    h.release()
    await tick()
    expect(h.forwarded).toEqual([6])
    expect(h.events).toEqual(['pause'])
    h.state.budget = 7
    h.release()
    await tick()
    expect(h.forwarded).toEqual([6, 6, 1])
    expect(h.events).toEqual(['pause', 'resume'])
  })

  it('runs an end of stream only after the chunks it holds', async () => {
    const h = harness(0)
    const order: string[] = []
    h.gate.push(new Uint8Array(3))
    h.gate.whenEmpty(() => order.push(`end after ${h.forwarded.length}`))
    expect(order).toEqual([])
    h.state.budget = 3
    h.release()
    await tick()
    expect(order).toEqual(['end after 1'])
    // nothing held: at once
    h.gate.whenEmpty(() => order.push('end now'))
    expect(order).toEqual(['end after 1', 'end now'])
  })

  it('drops what it holds once the tunnel is over, and neither resumes nor ends', async () => {
    const h = harness(0)
    const ended: string[] = []
    h.gate.push(new Uint8Array(3))
    h.gate.whenEmpty(() => ended.push('end'))
    h.close()
    h.state.budget = 100
    h.release()
    await tick()
    expect(h.forwarded).toEqual([])
    expect(h.events).toEqual(['pause'])
    expect(ended).toEqual([])
  })
})
