import { describe, expect, it } from 'vitest'
import { TunnelSlots } from '../../src/relay/tunnel-slots.ts'

describe('tunnel slots', () => {
  it('counts in all and per consumer, and a release gives back one slot however often it is called', () => {
    const slots = new TunnelSlots()
    const a1 = slots.take('a')
    const a2 = slots.take('a')
    const b1 = slots.take('b')
    expect([slots.size, slots.of('a'), slots.of('b'), slots.of('c')]).toEqual([3, 2, 1, 0])
    a1()
    a1()
    expect([slots.size, slots.of('a'), slots.of('b')]).toEqual([2, 1, 1])
    b1()
    a2()
    b1()
    expect([slots.size, slots.of('a'), slots.of('b')]).toEqual([0, 0, 0])
    // a consumer with no slot left takes no room in the map
    expect((slots as unknown as { byConsumer: Map<string, number> }).byConsumer.size).toBe(0)
  })
})
