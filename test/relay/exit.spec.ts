import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer } from 'node:net'
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import { ask, exitNode, fakeDns } from '../utils/exit-node.ts'
import type { TunnelExit, TunnelExitInit } from '../../src/relay/exit.ts'
import type { ExitNode } from '../utils/exit-node.ts'
import type { Libp2p } from '@libp2p/interface'
import type { AddressManager } from '@libp2p/interface-internal'
import type { AddressInfo, Server, Socket } from 'node:net'

/**
 * The exit as a libp2p service on a real node (TCP on loopback), asked by a
 * real consumer node (see utils/exit-node.ts). Names come from an injected
 * resolver: no DNS, and every address in these tests is a loopback one.
 */

describe('the exit dials every allowed address of a name, in order', () => {
  let target: Server
  let port: number
  let freePort: number
  const accepted: Socket[] = []
  let consumer: Libp2p
  let exit: ExitNode

  beforeAll(async () => {
    // the target listens on 127.0.0.1 only: ::1 and 127.0.0.2 refuse on its port
    target = createServer(s => { accepted.push(s); s.on('error', () => {}); s.end('hi\n') })
    await new Promise<void>(resolve => target.listen(0, '127.0.0.1', resolve))
    port = (target.address() as AddressInfo).port
    // a port nobody listens on: bind, note, close
    const probe = createServer()
    await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
    freePort = (probe.address() as AddressInfo).port
    await new Promise<void>(resolve => probe.close(() => resolve()))
    exit = await exitNode({
      policy: { allowedPorts: [[port, port], [freePort, freePort]], allowPrivateTargets: true, deniedCidrs: ['127.0.0.3'] },
      connectTimeoutMs: 5_000,
      resolve: fakeDns({
        'v6-first.test.example': ['::1', '127.0.0.1'],
        'v4-first.test.example': ['127.0.0.1', '::1'],
        'mixed.test.example': ['127.0.0.3', '127.0.0.2', '127.0.0.1'],
        'none.test.example': ['::1', '127.0.0.2'],
        'denied.test.example': ['127.0.0.3']
      })
    })
    consumer = await loopbackNode()
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    target?.close()
  })

  const opened = (): Promise<string> => new Promise(resolve => {
    exit.services.exit.addEventListener('exit:tunnel:open', e => resolve(e.detail.address), { once: true })
  })

  it('goes on to the next address when the first refuses', async () => {
    const address = opened()
    const before = accepted.length
    const r = await ask(consumer, exit, 'v6-first.test.example', port)
    expect(r.status).toBe(TunnelStatus.OK)
    expect(await address).toBe('127.0.0.1')
    expect(accepted.length).toBe(before + 1)
    r.close()
  })

  it('takes the first address when it answers', async () => {
    const address = opened()
    const r = await ask(consumer, exit, 'v4-first.test.example', port)
    expect(r.status).toBe(TunnelStatus.OK)
    expect(await address).toBe('127.0.0.1')
    r.close()
  })

  it('skips addresses the policy denies and tries the rest in order', async () => {
    const address = opened()
    const r = await ask(consumer, exit, 'mixed.test.example', port)
    expect(r.status).toBe(TunnelStatus.OK)
    expect(await address).toBe('127.0.0.1')
    r.close()
  })

  it('reports the last error when no address answers', async () => {
    const r = await ask(consumer, exit, 'none.test.example', freePort)
    expect(r.status).toBe(TunnelStatus.CONNECT_REFUSED)
    expect(r.message).toBe(`none.test.example:${freePort}: ECONNREFUSED (tried 2 addresses)`)
  })

  it('still refuses a name whose every address is denied, naming the first reason', async () => {
    const r = await ask(consumer, exit, 'denied.test.example', port)
    expect(r.status).toBe(TunnelStatus.POLICY_DENIED)
    expect(r.message).toBe('denied.test.example resolves to 127.0.0.3 is in a denied range (127.0.0.3)')
  })
})

describe('an exit with the default policy (no private targets)', () => {
  let consumer: Libp2p
  let exit: ExitNode
  beforeAll(async () => {
    exit = await exitNode({ policy: { allowedPorts: [[80, 80]], allowPrivateTargets: false }, resolve: fakeDns({ 'lan.test.example': ['192.168.1.10'] }) })
    consumer = await loopbackNode()
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
  })

  it('says, refusing a private target, that its operator could allow one for a local testnet; a refusal of another kind does not', async () => {
    const hint = ' (an exit takes such targets only when its operator allows them, for a local testnet: --allow-private-targets)'
    const cases: Array<[string, string]> = [
      ['127.0.0.1', '127.0.0.1 is a loopback address'],
      ['lan.test.example', 'lan.test.example resolves to 192.168.1.10 is a private address'],
      ['router', 'router is a single-label name, which would resolve on the exit\'s own network'],
      ['printer.local', 'printer.local is a local-only name (.local)']
    ]
    for (const [host, reason] of cases) {
      const r = await ask(consumer, exit, host, 80)
      expect(r.status, host).toBe(TunnelStatus.POLICY_DENIED)
      expect(r.message, host).toBe(reason + hint)
    }
    const port = await ask(consumer, exit, 'lan.test.example', 22)
    expect(port.status).toBe(TunnelStatus.POLICY_DENIED)
    expect(port.message).not.toContain('--allow-private-targets')
  })
})

/**
 * The exit's own addresses beyond its interfaces. No test here dials
 * anything: the exit has no peers and is only asked what it would do
 * (checkAddress, status). 5.6.7.x stand for a NATed exit's public address,
 * which no interface of the exit carries.
 */
describe('the exit refuses its own public addresses, and keeps the list current', () => {
  const nodes: ExitNode[] = []
  afterAll(async () => { await Promise.all(nodes.map(async n => n.stop())) })
  const OWN = "one of the exit's own addresses"

  async function started (init: Partial<TunnelExitInit>, announce?: string[]): Promise<TunnelExit> {
    const node = await exitNode({ policy: { allowedPorts: [[443, 443]] }, resolve: fakeDns({}), ...init }, announce)
    nodes.push(node)
    return node.services.exit
  }
  const reason = (exit: TunnelExit, address: string): string => {
    const d = exit.checkAddress(address, 443)
    return d.allowed ? 'allowed' : d.reason
  }

  it('announced addresses (--announce), and what announced names resolve to', async () => {
    const exit = await started({
      interfaceAddresses: () => ['127.0.0.1'],
      resolve: fakeDns({ 'home.test.example': ['5.6.7.10'] })
    }, ['/ip4/5.6.7.8/tcp/4001', '/dns4/home.test.example/tcp/4001', '/ip4/203.0.113.9/tcp/4001'])
    expect(reason(exit, '5.6.7.8')).toBe(`5.6.7.8 is ${OWN}`)
    expect(reason(exit, '::ffff:5.6.7.8')).toBe(`::ffff:5.6.7.8 maps to 5.6.7.8, ${OWN}`)
    await waitFor(() => reason(exit, '5.6.7.10') === `5.6.7.10 is ${OWN}`, { timeoutMs: 5000, what: 'the announced name\'s address to be refused' })
    // a neighbour is not the exit
    expect(reason(exit, '5.6.7.9')).toBe('allowed')
    expect(exit.status().ownAddresses).toEqual(expect.arrayContaining(['127.0.0.1', '5.6.7.8', '5.6.7.10', '203.0.113.9']))
  })

  it('an observed address autonat confirms, on the self:peer:update that follows', async () => {
    const exit = await started({ interfaceAddresses: () => ['127.0.0.1'], ownAddressRefreshMs: 3_600_000 })
    const node = nodes[nodes.length - 1]
    // the implementation's components, as identify and autonat reach them
    const { addressManager } = (node as unknown as { components: { addressManager: AddressManager } }).components
    expect(reason(exit, '5.6.7.11')).toBe('allowed')
    // what identify and autonat do when peers see this node at 5.6.7.11
    addressManager.addObservedAddr(multiaddr('/ip4/5.6.7.11/tcp/4001'))
    addressManager.confirmObservedAddr(multiaddr('/ip4/5.6.7.11/tcp/4001'), { type: 'observed' })
    await waitFor(() => node.getMultiaddrs().some(ma => ma.toString().startsWith('/ip4/5.6.7.11/')), { timeoutMs: 5000, what: 'libp2p to report the address' })
    await waitFor(() => reason(exit, '5.6.7.11') === `5.6.7.11 is ${OWN}`, { timeoutMs: 5000, what: 'the confirmed address to be refused' })
    // and when autonat takes it back, it is an ordinary target again
    addressManager.removeObservedAddr(multiaddr('/ip4/5.6.7.11/tcp/4001'))
    await waitFor(() => reason(exit, '5.6.7.11') === 'allowed', { timeoutMs: 5000, what: 'the address to be forgotten' })
  })

  it('interface addresses are read again periodically', async () => {
    const interfaces = ['127.0.0.1']
    const exit = await started({ interfaceAddresses: () => interfaces, ownAddressRefreshMs: 100 })
    expect(reason(exit, '5.6.7.12')).toBe('allowed')
    interfaces.push('5.6.7.12')
    await waitFor(() => reason(exit, '5.6.7.12') === `5.6.7.12 is ${OWN}`, { timeoutMs: 5000, what: 'a new interface address to be refused' })
    interfaces.pop()
    await waitFor(() => reason(exit, '5.6.7.12') === 'allowed', { timeoutMs: 5000, what: 'a gone interface address to be allowed' })
  })

  it('a local testnet (private targets allowed) has no own-address rule', async () => {
    const exit = await started({ policy: { allowedPorts: [[443, 443]], allowPrivateTargets: true }, interfaceAddresses: () => ['127.0.0.1'] }, ['/ip4/5.6.7.8/tcp/4001'])
    expect(reason(exit, '127.0.0.1')).toBe('allowed')
    expect(exit.status().ownAddresses).toEqual([])
  })
})

describe('the operator\'s pause is saved in the state file', () => {
  const nodes: ExitNode[] = []
  afterAll(async () => { await Promise.all(nodes.map(async n => n.stop())) })
  const make = async (stateFile: string, now?: () => Date): Promise<TunnelExit> => {
    const node = await exitNode({ policy: { allowedPorts: [[443, 443]] }, resolve: fakeDns({}), stateFile, now })
    nodes.push(node)
    return node.services.exit
  }

  it('a new exit on the same file starts paused, and unpaused after resume', async () => {
    const file = join(await tempDir('sb-exit-state-'), 'exit-state.json')
    const first = await make(file, () => new Date('2026-03-01T10:00:00Z'))
    expect(first.status()).toMatchObject({ paused: false, pausedSince: null })
    first.pause()
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ paused: true, pausedSince: '2026-03-01T10:00:00.000Z' })
    const second = await make(file)
    expect(second.status()).toMatchObject({ paused: true, pausedSince: '2026-03-01T10:00:00.000Z' })
    second.resume()
    const third = await make(file)
    expect(third.status()).toMatchObject({ paused: false, pausedSince: null })
  })

  it('a state file that cannot be read stops the start instead of resuming', async () => {
    const file = join(await tempDir('sb-exit-state-'), 'exit-state.json')
    await writeFile(file, 'garbage')
    await expect(make(file)).rejects.toThrow(/not an exit state file/)
  })

  it('a pause that cannot be saved still pauses, and its status says why it will not outlast the node', async () => {
    const dir = await tempDir('sb-exit-state-')
    const file = join(dir, 'exit-state.json')
    // the atomic write's temporary file cannot be made
    await mkdir(`${file}.tmp`)
    const exit = await make(file)
    // what hears of the pause (the start log's warnings) knows at once that it will not outlast the node
    const heard: Array<string | null> = []
    exit.addEventListener('exit:offer:change', () => { heard.push(exit.status().stateNotSaved) })
    exit.pause()
    expect(heard).toHaveLength(1)
    expect(heard[0]).toMatch(/could not be written/)
    expect(exit.status()).toMatchObject({ paused: true })
    expect(exit.status().stateNotSaved).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} could not be written \\(.*EISDIR`))
    exit.resume()
    expect(exit.status()).toMatchObject({ paused: false })
    expect(exit.status().stateNotSaved).not.toBeNull()
    // once the file can be written, the state is saved and the note goes
    await rmdir(`${file}.tmp`)
    exit.pause()
    expect(exit.status()).toMatchObject({ paused: true, stateNotSaved: null })
    expect((await make(file)).status().paused).toBe(true)
  })
})

describe('the share schedule', () => {
  const closers: Array<() => Promise<void>> = []
  afterAll(async () => { for (const c of closers) await c() })

  it('closes the tunnels open when its window ends, and refuses new ones until the next', async () => {
    // a target that holds each connection open and counts those that closed
    const sockets: Socket[] = []
    let closed = 0
    const target: Server = createServer(s => { sockets.push(s); s.on('close', () => { closed++ }); s.on('error', () => {}) })
    await new Promise<void>(resolve => target.listen(0, '127.0.0.1', resolve))
    closers.push(async () => { for (const s of sockets) s.destroy(); await new Promise(resolve => target.close(resolve)) })
    const port = (target.address() as AddressInfo).port
    // Monday 10:30 local time, inside "mon 10:00-11:00"
    let now = new Date(2026, 10, 23, 10, 30)
    const exit = await exitNode({ policy: { allowedPorts: [[port, port]], allowPrivateTargets: true }, resolve: fakeDns({}), schedule: 'mon 10:00-11:00', scheduleCheckMs: 50, now: () => now })
    const consumer = await loopbackNode()
    closers.push(async () => { await consumer.stop(); await exit.stop() })
    const open = await ask(consumer, exit, '127.0.0.1', port)
    expect(open.status).toBe(TunnelStatus.OK)
    await waitFor(() => sockets.length === 1, { what: 'the target to see the tunnel' })
    expect(exit.services.exit.status().tunnelsOpen).toBe(1)

    now = new Date(2026, 10, 23, 11, 0, 1)
    await waitFor(() => closed === 1 && exit.services.exit.status().tunnelsOpen === 0, { what: 'the tunnel closed at the end of the window' })
    const late = await ask(consumer, exit, '127.0.0.1', port)
    expect(late.status).toBe(TunnelStatus.OUTSIDE_SCHEDULE)
    expect(sockets).toHaveLength(1)
    // next Monday, inside again
    now = new Date(2026, 10, 30, 10, 0)
    const again = await ask(consumer, exit, '127.0.0.1', port)
    expect(again.status).toBe(TunnelStatus.OK)
    again.close()
  })
})
