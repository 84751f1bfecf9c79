import { expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { SilentRelays } from '../../src/node/silent-relays.ts'
import type { Address } from '@libp2p/interface'

const EXIT = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const R1 = '12D3KooWCxKDGF2yg2xUZhzPVm2419mP956uKtxBj4QwXhLhsPLK'
const R2 = '12D3KooWEV6DnnoY1pEae5MmxCQY2UfirshuhXbtzgL91MeNMZ86'

const circuit = (relayIp: string, relay: string): Address => ({ multiaddr: multiaddr(`/ip4/${relayIp}/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${EXIT}`), isCertified: true })
const direct = (ip: string): Address => ({ multiaddr: multiaddr(`/ip4/${ip}/tcp/4001/p2p/${EXIT}`), isCertified: true })
const sorted = (s: SilentRelays, addrs: Address[]): string[] => [...addrs].sort(s.compare).map(a => a.multiaddr.toString())

it('puts a circuit through a relay marked silent after the other circuits, and only after them', () => {
  const s = new SilentRelays()
  const viaR1 = circuit('11.77.3.2', R1)
  const viaR2 = circuit('11.77.4.2', R2)
  const lan = direct('192.168.1.7')
  const pub = direct('11.77.1.9')
  // libp2p's own order: public first, circuits after direct addresses, ties as they came (r1 first)
  expect(sorted(s, [viaR1, viaR2, lan, pub])).toEqual([pub, viaR1, viaR2, lan].map(a => a.multiaddr.toString()))
  s.mark(R1)
  expect(sorted(s, [viaR1, viaR2, lan, pub])).toEqual([pub, viaR2, viaR1, lan].map(a => a.multiaddr.toString()))
  expect(sorted(s, [pub, viaR2])).toEqual([pub, viaR2].map(a => a.multiaddr.toString()))
  expect(s.isMarked(R1)).toBe(true)
  expect(s.isMarked(R2)).toBe(false)
})

it('forgets a mark after its time, or once a connection to the relay opens', () => {
  let now = 1_000_000
  const events = new EventTarget() as any
  const s = new SilentRelays(60_000, () => now).withEvents(events)
  s.start()
  const viaR1 = circuit('11.77.3.2', R1)
  const viaR2 = circuit('11.77.4.2', R2)
  s.mark(R1)
  s.mark(R2)
  now += 59_999
  expect([s.isMarked(R1), s.isMarked(R2)]).toEqual([true, true])
  // r2 answers again: a connection to it opened
  events.dispatchEvent(new CustomEvent('connection:open', { detail: { remotePeer: peerIdFromString(R2) } }))
  expect([s.isMarked(R1), s.isMarked(R2)]).toEqual([true, false])
  expect(sorted(s, [viaR1, viaR2])).toEqual([viaR2, viaR1].map(a => a.multiaddr.toString()))
  now += 1
  expect(s.isMarked(R1)).toBe(false)
  expect(sorted(s, [viaR1, viaR2])).toEqual([viaR1, viaR2].map(a => a.multiaddr.toString()))
  s.stop()
})

it('counts only answers from a given time on (a check\'s), and an answer takes a mark back', () => {
  let now = 1_000_000
  const s = new SilentRelays(60_000, () => now)
  const viaR1 = circuit('11.77.3.2', R1)
  const viaR2 = circuit('11.77.4.2', R2)
  s.answered(R1)
  const checkStarts = now + 1
  now += 10
  // answered before the check began: says nothing of now
  expect(s.answeredSince(R1, checkStarts)).toBe(false)
  expect(s.answeredSince(R2, checkStarts)).toBe(false)
  s.mark(R1)
  expect(sorted(s, [viaR1, viaR2])).toEqual([viaR2, viaR1].map(a => a.multiaddr.toString()))
  // it answers within the check: not silent after all
  s.answered(R1)
  expect(s.answeredSince(R1, checkStarts)).toBe(true)
  expect(s.isMarked(R1)).toBe(false)
  expect(sorted(s, [viaR1, viaR2])).toEqual([viaR1, viaR2].map(a => a.multiaddr.toString()))
})

it('with nothing marked, orders as libp2p\'s own defaultAddressSorter does (a copy that would drift with an upgrade shows here)', async () => {
  // libp2p does not export it: read from its build, the file its dial queue uses
  const { defaultAddressSorter } = await import('../../node_modules/libp2p/dist/src/connection-manager/address-sorter.js')
  const s = new SilentRelays()
  const pool = [
    direct('11.0.0.1'), direct('192.168.0.2'), direct('127.0.0.1'),
    { multiaddr: multiaddr(`/ip4/11.0.0.1/udp/4001/webrtc-direct/p2p/${EXIT}`), isCertified: false },
    { multiaddr: multiaddr(`/ip6/2001:db8::1/tcp/4001/p2p/${EXIT}`), isCertified: true },
    circuit('11.0.0.9', R1), circuit('11.0.0.8', R2), circuit('10.0.0.9', R1),
    { multiaddr: multiaddr(`/ip4/11.0.0.9/tcp/4001/p2p/${R1}/p2p-circuit/webrtc/p2p/${EXIT}`), isCertified: false }
  ]
  // a fixed sequence of subsets and certifications: the same cases every run
  let seed = 7
  const next = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
  for (let k = 0; k < 500; k++) {
    const addrs = pool.filter(() => next() < 0.7).map(a => ({ multiaddr: a.multiaddr, isCertified: next() < 0.5 }))
    expect([...addrs].sort(s.compare).map(a => a.multiaddr.toString())).toEqual(defaultAddressSorter([...addrs]).map((a: Address) => a.multiaddr.toString()))
  }
})
