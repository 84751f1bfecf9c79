/**
 * What RelayFailover decides when an exit is found gone on a circuit: a
 * relay that died against an exit that went away, judged by the relays'
 * answers within the check only. The connections are plain records and the
 * relays' pings a function of the test's (which relay answers): the real
 * pings and circuits are in test/e2e/netns-moved-relay.spec.ts (a relay
 * dies) and test/e2e/relayed-exit-stops.spec.ts (an exit behind two live
 * relays stops).
 */
import { describe, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { RelayFailover } from '../../src/node/relay-failover.ts'
import { SilentRelays } from '../../src/node/silent-relays.ts'
import type { Connection } from '@libp2p/interface'

const EXIT = peerIdFromString('12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN')
const R1 = '12D3KooWCxKDGF2yg2xUZhzPVm2419mP956uKtxBj4QwXhLhsPLK'
const R2 = '12D3KooWEV6DnnoY1pEae5MmxCQY2UfirshuhXbtzgL91MeNMZ86'
const R3 = '12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE'

const circuitAddr = (relay: string, ip: string): string => `/ip4/${ip}/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${EXIT.toString()}`
const conn = (addr: string, peer: string): Connection => ({ remoteAddr: multiaddr(addr), remotePeer: peerIdFromString(peer), status: 'open', limits: undefined } as unknown as Connection)

/** Our circuits to the exit, our direct connections to the relays, and the exit's addresses in the peer store. */
function world (circuits: Connection[], known: string[] = []): { failover: RelayFailover, relays: SilentRelays, alive: Set<string>, clock: { now: number } } {
  const toRelays = [R1, R2, R3].map((r, i) => conn(`/ip4/11.77.${i + 3}.2/tcp/4001/p2p/${r}`, r))
  const libp2p = {
    getConnections: (peer?: { toString: () => string }) => peer?.toString() === EXIT.toString() ? circuits.filter(c => c.status === 'open') : toRelays.filter(c => c.remotePeer.toString() === peer?.toString()),
    peerStore: { get: async () => ({ addresses: known.map(a => ({ multiaddr: multiaddr(a) })) }) }
  }
  const clock = { now: 1_000_000 }
  const relays = new SilentRelays(600_000, () => clock.now)
  const alive = new Set<string>()
  const ping = async (c: Connection): Promise<void> => {
    if (!alive.has(c.remotePeer.toString())) throw new Error('no answer')
  }
  return { failover: new RelayFailover(libp2p as any, relays, () => clock.now, ping), relays, alive, clock }
}

const settle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 0)) }

describe('RelayFailover', () => {
  it('a relay that answered an earlier check and not this one died: its circuits end, the others stay, and the exit may be asked again', async () => {
    const viaR1 = conn(circuitAddr(R1, '11.77.3.2'), EXIT.toString())
    const viaR2 = conn(circuitAddr(R2, '11.77.4.2'), EXIT.toString())
    const { failover, relays, alive, clock } = world([viaR1, viaR2])
    alive.add(R1).add(R2)
    // an earlier check (idle tunnels): both relays answer, and so does the exit
    failover.checking(EXIT, viaR1)
    await settle()
    failover.answered(EXIT)
    expect(relays.answeredSince(R1, clock.now)).toBe(true)
    // 20 s on R1 dies; the next check judges the circuit through it
    clock.now += 20_000
    alive.delete(R1)
    failover.checking(EXIT, viaR1)
    await settle()
    const ended = failover.gone(EXIT, 0)
    expect(ended).toEqual([viaR1])
    expect(relays.isMarked(R1)).toBe(true)
    expect(relays.isMarked(R2)).toBe(false)
    ;(viaR1 as any).status = 'closed'
    expect(await failover.otherRoute(EXIT)).toBe(true)
  })

  it('an exit that went away behind relays that answer: every quiet circuit ends and it is not asked again, whatever relay was marked before', async () => {
    const viaR1 = conn(circuitAddr(R1, '11.77.3.2'), EXIT.toString())
    const viaR2 = conn(circuitAddr(R2, '11.77.4.2'), EXIT.toString())
    // R3 died minutes ago, another exit's matter: marked
    const { failover, relays, alive } = world([viaR1, viaR2], [circuitAddr(R3, '11.77.5.2')])
    relays.mark(R3)
    alive.add(R1).add(R2)
    failover.checking(EXIT, viaR1)
    await settle()
    expect(failover.gone(EXIT, 0)).toEqual([viaR1, viaR2])
    expect([relays.isMarked(R1), relays.isMarked(R2)]).toEqual([false, false])
    for (const c of [viaR1, viaR2]) (c as any).status = 'closed'
    expect(await failover.otherRoute(EXIT)).toBe(false)
  })

  it('the judged circuit\'s relay answered while another relay did not: the exit itself went away, and it is not asked again over the circuit just judged', async () => {
    const viaR1 = conn(circuitAddr(R1, '11.77.3.2'), EXIT.toString())
    const viaR2 = conn(circuitAddr(R2, '11.77.4.2'), EXIT.toString())
    const { failover, relays, alive } = world([viaR1, viaR2])
    alive.add(R1)
    failover.checking(EXIT, viaR1)
    await settle()
    expect(failover.gone(EXIT, 0)).toEqual([viaR1, viaR2])
    // R2 did not answer: dialled last for a while all the same
    expect([relays.isMarked(R1), relays.isMarked(R2)]).toEqual([false, true])
    expect(await failover.otherRoute(EXIT)).toBe(false)
  })

  it('a check that ended with no verdict (the exit was heard from) does not lend its start to the next', async () => {
    const viaR1 = conn(circuitAddr(R1, '11.77.3.2'), EXIT.toString())
    const { failover, relays, alive, clock } = world([viaR1])
    alive.add(R1)
    failover.checking(EXIT, viaR1)
    await settle()
    // no answered(), no gone(): a minute on, R1 died, and a new check judges the same circuit
    clock.now += 60_000
    alive.delete(R1)
    failover.checking(EXIT, viaR1)
    await settle()
    expect(failover.gone(EXIT, 0)).toEqual([viaR1])
    expect(relays.isMarked(R1)).toBe(true)
  })

  it('asks again only for a while after the verdict, and only when a circuit through an unmarked relay is there', async () => {
    const viaR1 = conn(circuitAddr(R1, '11.77.3.2'), EXIT.toString())
    const { failover } = world([viaR1], [circuitAddr(R1, '11.77.3.2')])
    failover.checking(EXIT, viaR1)
    await settle()
    expect(failover.gone(EXIT, 0)).toEqual([viaR1])
    ;(viaR1 as any).status = 'closed'
    // its only relay died: nowhere else to ask it
    expect(await failover.otherRoute(EXIT)).toBe(false)
    const viaR2 = conn(circuitAddr(R2, '11.77.4.2'), EXIT.toString())
    const second = world([viaR1, viaR2], [circuitAddr(R1, '11.77.3.2'), circuitAddr(R2, '11.77.4.2')])
    second.alive.add(R2)
    second.failover.checking(EXIT, viaR1)
    await settle()
    second.failover.gone(EXIT, 0)
    expect(await second.failover.otherRoute(EXIT)).toBe(true)
    second.clock.now += 15_001
    expect(await second.failover.otherRoute(EXIT)).toBe(false)
  })
})
