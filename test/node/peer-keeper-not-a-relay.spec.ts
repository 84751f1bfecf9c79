import { describe, it, expect, afterEach } from 'vitest'
import { setTimeout as sleep } from 'node:timers/promises'
import { createSparebandNode, defaultConfig } from '../../src/index.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'

/**
 * Review: the keeper makes a named relay's listener with
 * transportManager.listen() until one listen succeeds. A listen that fails
 * after the dial (the relay answers but refuses a reservation: no hop
 * protocol, full) leaves its CircuitRelayTransportListener in libp2p's
 * transport manager (it pushes the listener before listen() and only drops
 * it on 'close'), so every redial, every minute for as long as the node
 * runs, adds one more listener (and two listeners on the reservation store).
 */
/** The relay search's listeners: one per relay it reserves on (network.relay_reservations). */
const SEARCH_LISTENERS = defaultConfig.network.relay_reservations

describe('the keeper, a named relay that answers but takes no reservation', () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
  })
  const base = { api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8 } }

  /**
   * R, reachable but not a relay (relay.enabled = false: a reservation fails
   * with UnsupportedProtocolError), and E naming it, redialling at most 1 s
   * apart; with the number of E's circuit relay listeners.
   */
  async function exitNamingANonRelay (): Promise<{ r: SparebandNode, relayDir: string, relayAddr: string, e: SparebandNode, circuitListeners: () => number }> {
    const relayDir = await tempDir('sb-rv-')
    const r = await createSparebandNode({ dataDir: relayDir, config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0'], network: { local_testnet: true }, exit: { enabled: false }, relay: { enabled: false } } })
    await r.start()
    cleanups.push(async () => r.stop())
    const relayAddr = r.libp2p.getMultiaddrs()[0].toString()
    const e = await createSparebandNode({
      dataDir: await tempDir('sb-rv-'),
      config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0', `${relayAddr}/p2p-circuit`], network: { local_testnet: true, redial_max_seconds: 1 } }
    })
    await e.start()
    cleanups.push(async () => e.stop())
    const circuitListeners = (): number => ((e.libp2p as any).components.transportManager.getListeners() as any[])
      .filter(l => l.constructor?.name === 'CircuitRelayTransportListener').length
    return { r, relayDir, relayAddr, e, circuitListeners }
  }

  it('does not pile up relay listeners with every redial', async () => {
    const { relayAddr, e, circuitListeners } = await exitNamingANonRelay()
    const atStart = circuitListeners()
    // about 8 redials (0.5-1 s apart)
    await sleep(8_000)
    expect(e.status().relays).toEqual([{ addr: relayAddr, connected: true, reserved: false }])
    // the relay search's (/p2p-circuit, one per reservation it seeks), and at most one for R
    expect(circuitListeners(), `${atStart} at start`).toBeLessThanOrEqual(SEARCH_LISTENERS + 1)
  }, 30_000)

  it('a named relay that refused for want of the relay service and comes back as a relay is reserved on again, without a restart, and piles up no listeners', async () => {
    const { r, relayDir, relayAddr, e, circuitListeners } = await exitNamingANonRelay()
    const store = ((e.libp2p as any).components.transportManager.getTransports() as any[]).find(t => t.reservationStore != null).reservationStore
    // libp2p's reservation store put R in its relayFilter at the first refusal, for the life of the process
    await waitFor(() => store.relayFilter.has(r.peerId.toMultihash().bytes) === true, { what: 'libp2p to shun R' })
    const back: unknown[] = []
    e.addEventListener('keeper:back', ev => back.push(ev.detail))
    const port = Number(/\/tcp\/(\d+)/.exec(relayAddr)![1])
    await r.stop()
    // the same identity on the same port, a relay now
    const again: SparebandNode = await createSparebandNode({ dataDir: relayDir, config: { ...base, listen: [`/ip4/127.0.0.1/tcp/${port}`], network: { local_testnet: true }, exit: { enabled: false } } })
    await again.start()
    cleanups.push(async () => again.stop())
    // redials at most 1 s apart (redial_max_seconds = 1)
    await waitFor(() => (e.status().relays as any[]).some((s: any) => s.reserved === true), { timeoutMs: 15_000, what: 'a reservation on R, back as a relay' })
    expect(e.status().relays).toEqual([{ addr: relayAddr, connected: true, reserved: true }])
    expect(store.relayFilter.has(again.peerId.toMultihash().bytes)).toBe(false)
    expect(back).toEqual([expect.objectContaining({ kind: 'relay', target: relayAddr })])
    // reachable through it: E's addresses include one relayed by R
    await waitFor(() => e.status().addresses.some(a => a.startsWith(`${relayAddr}/p2p-circuit`)), { what: 'the relayed address' })
    // the search's listeners, the first failed listen on R, and the one that got through: no more
    expect(circuitListeners()).toBeLessThanOrEqual(SEARCH_LISTENERS + 2)
  }, 40_000)

  it('a named relay reserved on, back without the relay service and then with it, is reserved on again without a restart', async () => {
    const relayDir = await tempDir('sb-rv-')
    const relayConfig = (port: number, relay: boolean): any => ({ ...base, listen: [`/ip4/127.0.0.1/tcp/${port}`], network: { local_testnet: true }, exit: { enabled: false }, relay: { enabled: relay } })
    let r = await createSparebandNode({ dataDir: relayDir, config: relayConfig(0, true) })
    await r.start()
    const relayAddr = r.libp2p.getMultiaddrs()[0].toString()
    const port = Number(/\/tcp\/(\d+)/.exec(relayAddr)![1])
    cleanups.push(async () => r.stop())
    const e = await createSparebandNode({
      dataDir: await tempDir('sb-rv-'),
      config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0', `${relayAddr}/p2p-circuit`], network: { local_testnet: true, redial_max_seconds: 1 } }
    })
    await e.start()
    cleanups.push(async () => e.stop())
    const reserved = (): boolean => (e.status().relays ?? []).some(s => s.reserved)
    await waitFor(reserved, { timeoutMs: 15_000, what: 'a first reservation on R' })
    const store = ((e.libp2p as any).components.transportManager.getTransports() as any[]).find(t => t.reservationStore != null).reservationStore
    // R comes back on its port without the relay service: E's redial is refused, and libp2p shuns R
    await r.stop()
    r = await createSparebandNode({ dataDir: relayDir, config: relayConfig(port, false) })
    await r.start()
    await waitFor(() => store.relayFilter.has(r.peerId.toMultihash().bytes) === true, { timeoutMs: 20_000, what: 'libp2p to shun R' })
    expect(reserved()).toBe(false)
    // and back again as a relay
    await r.stop()
    r = await createSparebandNode({ dataDir: relayDir, config: relayConfig(port, true) })
    await r.start()
    await waitFor(reserved, { timeoutMs: 20_000, what: 'a reservation on R, a relay again' })
    expect(store.relayFilter.has(r.peerId.toMultihash().bytes)).toBe(false)
  }, 90_000)
})
