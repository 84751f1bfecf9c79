/**
 * status() is typed for embedding apps: each part's section has a declared
 * shape (checked by the compiler here, as an app's would be) and the
 * running node fills it (checked at run time on an exit and a consumer).
 */

import { expect, expectTypeOf, it } from 'vitest'
import { useExitAndConsumer } from '../utils/in-process.ts'
import type { AccountingStatus, DisabledExitStatus, ExitOffer, ExitStats, NodeStatus, ProxyStatus, RoutingStatus } from '../../src/index.ts'

const t = useExitAndConsumer()

it('types each part\'s section of status()', () => {
  expectTypeOf(t.exit.status()).toEqualTypeOf<NodeStatus>()
  expectTypeOf<NodeStatus['exit']>().toEqualTypeOf<(ExitStats & ExitOffer) | DisabledExitStatus | undefined>()
  expectTypeOf<NodeStatus['proxy']>().toEqualTypeOf<ProxyStatus | undefined>()
  expectTypeOf<NodeStatus['routing']>().toEqualTypeOf<RoutingStatus | undefined>()
  expectTypeOf<NodeStatus['accounting']>().toEqualTypeOf<AccountingStatus | undefined>()
  expectTypeOf<AccountingStatus['balance']>().toEqualTypeOf<string>()
  expectTypeOf<ProxyStatus['socksPort']>().toEqualTypeOf<number>()
})

it('an exit\'s status has what its type says', () => {
  const s = t.exit.status()
  const e = s.exit!
  expect(e.enabled).toBe(true)
  if (!e.enabled) throw new Error('unreachable')
  // narrowed to ExitStats: the limits and policy are there
  expect(e.limits.maxTunnels).toBe(1024)
  expect(typeof e.policy).toBe('string')
  expect(e.withinSchedule).toBe(true)
  // what it offers, as its operator set it
  expect(e.pricePerGb).toBe(1)
  expect(e.capacityMbps).toBeGreaterThan(0)
  expect(e.schedule).toBe('always')
  expect(s.routing!.knownExits).toBeGreaterThanOrEqual(0)
  const a = s.accounting!
  expect(a.enabled).toBe(true)
  expect(a.proofOfWork.difficulty).toBe(8)
  expect(a.balance).toMatch(/^-?\d+(\.\d{1,6})?$/)
  expect(a.bytesCarried).toMatch(/^\d+$/)
  expect(typeof a.gossip.subscribers).toBe('number')
  expect(a.reputation.own.reporters).toBe(0)
  expect(a.pending).not.toBeNull()
  expect(a.pending!.carriedUnsignedBytes).toBe(0)
})

it('a consumer\'s status: the exit off, the proxies listening', () => {
  const s = t.consumer.status()
  const e = s.exit!
  expect(e).toEqual({ enabled: false, bytesIn: 0, bytesOut: 0, tunnelsOpen: 0, tunnelsConnecting: 0, tunnelsTotal: 0, denied: 0 })
  const p = s.proxy!
  expect(p.socksPort).toBeGreaterThan(0)
  expect(p.httpPort).toBeGreaterThan(0)
  expect(p.warmStreams).toEqual({ ready: expect.any(Number), opening: expect.any(Number), hits: expect.any(Number), misses: expect.any(Number) })
  expect(s.accounting!.proofOfWork.solved).toBe(true)
  // the whole status is plain JSON (no bigints)
  expect(JSON.parse(JSON.stringify(s))).toEqual(s)
})
