/**
 * On the public network a node dials no private address but its given
 * peers' (src/node/private-dials.ts), DNS names included: they are looked
 * up before the dial and the gater judges what the lookup gave. Unit
 * checks with an injected lookup (nothing resolved or dialled), then real
 * nodes on loopback, `localhost` standing for a name that points at a
 * private address.
 */

import { afterAll, describe, expect, it } from 'vitest'
import { createServer } from 'node:net'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { libp2pOptions } from '../../src/node/libp2p.ts'
import { defaultConfig } from '../../src/node/config.ts'
import type { SparebandConfig } from '../../src/node/config.ts'
import { DnsNameResolver, GivenAddresses, privateDialGater } from '../../src/node/private-dials.ts'
import { waitFor } from '../utils/cli.ts'
import type { LookupAll } from '../../src/node/private-dials.ts'
import type { Libp2p } from '@libp2p/interface'
import type { AddressInfo } from 'node:net'

const stops: Array<() => Promise<void>> = []
afterAll(async () => { for (const s of stops.reverse()) await s().catch(() => {}) })

const EXIT = '12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE'
const RELAY = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

describe('DnsNameResolver', () => {
  const asked: Array<[string, number]> = []
  const table: LookupAll = async (host, family) => {
    asked.push([host, family])
    if (host === 'gone.example') throw Object.assign(new Error('getaddrinfo ENOTFOUND gone.example'), { code: 'ENOTFOUND' })
    if (host === 'stalls.example') return new Promise(() => {})
    const all = [{ address: '10.1.2.3', family: 4 }, { address: 'fd00::7', family: 6 }]
    return all.filter(a => family === 0 || a.family === family)
  }
  const resolver = new DnsNameResolver({ lookup: table, timeoutMs: 100 })
  const resolve = async (a: string): Promise<string[]> => (await resolver.resolve(multiaddr(a))).map(m => m.toString())

  it('puts each address of the name in its place, keeping the rest of the address', async () => {
    expect(await resolve(`/dns4/exit.example/tcp/4001/p2p/${EXIT}`)).toEqual([`/ip4/10.1.2.3/tcp/4001/p2p/${EXIT}`])
    expect(await resolve('/dns6/exit.example/tcp/4001')).toEqual(['/ip6/fd00::7/tcp/4001'])
    expect(await resolve('/dns/exit.example/udp/4001/webrtc-direct')).toEqual(['/ip4/10.1.2.3/udp/4001/webrtc-direct', '/ip6/fd00::7/udp/4001/webrtc-direct'])
    expect(await resolve(`/dns4/relay.example/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${EXIT}`)).toEqual([`/ip4/10.1.2.3/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${EXIT}`])
    expect(asked).toEqual([['exit.example', 4], ['exit.example', 6], ['exit.example', 0], ['relay.example', 4]])
    // asked again within the minute: the answer held, no second lookup
    expect(await resolve('/dns4/exit.example/tcp/80')).toEqual(['/ip4/10.1.2.3/tcp/80'])
    expect(asked).toHaveLength(4)
  })

  it('a name that does not resolve, or not in time, gives no address rather than failing or holding up the whole dial', async () => {
    expect(await resolve('/dns4/gone.example/tcp/4001')).toEqual([])
    const started = performance.now()
    expect(await resolve('/dns4/stalls.example/tcp/4001')).toEqual([])
    expect(performance.now() - started).toBeLessThan(2000)
    // the dial's own signal aborting is the dial's end, and said so
    await expect(resolver.resolve(multiaddr('/dns4/stalls.example/tcp/1'), { signal: AbortSignal.abort(new Error('dial over')) })).rejects.toThrow('dial over')
  })

  it('resolves names only, and leaves to their transports the addresses whose TLS needs the name', () => {
    expect(resolver.canResolve(multiaddr('/ip4/11.0.0.1/tcp/1'))).toBe(false)
    expect(resolver.canResolve(multiaddr('/dnsaddr/bootstrap.example'))).toBe(false)
    expect(resolver.canResolve(multiaddr('/dns4/a.example/tcp/1'))).toBe(true)
    expect(resolver.canResolve(multiaddr('/dns4/a.example/tcp/443/tls/ws'))).toBe(false)
    expect(resolver.canResolve(multiaddr('/dns4/a.example/tcp/443/wss'))).toBe(false)
  })
})

describe('privateDialGater', () => {
  const gate = (given: string[]): ((a: string) => boolean) => {
    const g = privateDialGater({ publicOnly: true, given: new GivenAddresses(given) })
    return a => g.denyDialMultiaddr!(multiaddr(a)) as boolean
  }

  it('on the public network refuses private addresses, but the given ones: their peer and IP together, a circuit by its relay\'s', () => {
    const denied = gate([`/ip4/10.9.9.9/tcp/4001/p2p/${RELAY}`])
    expect(denied(`/ip4/11.77.1.5/tcp/4001/p2p/${EXIT}`)).toBe(false)
    expect(denied(`/ip6/2001:4860::1/tcp/4001/p2p/${EXIT}`)).toBe(false)
    for (const a of [`/ip4/127.0.0.1/tcp/4001/p2p/${EXIT}`, `/ip4/192.168.1.1/tcp/80/p2p/${EXIT}`, `/ip4/100.64.0.1/tcp/1/p2p/${EXIT}`, `/ip6/fe80::1/tcp/4001/p2p/${EXIT}`, '/ip4/10.0.0.1/tcp/4001', `/ip4/10.0.0.1/tcp/4001/p2p/${EXIT}/p2p-circuit/p2p/${RELAY}`]) {
      expect(denied(a), a).toBe(true)
    }
    // the given relay at its given IP, and circuits through it there
    expect(denied(`/ip4/10.9.9.9/tcp/4001/p2p/${RELAY}`)).toBe(false)
    expect(denied(`/ip4/10.9.9.9/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${EXIT}`)).toBe(false)
    // but not any private address a DHT peer stored under the relay's (public) id, nor another peer at its IP
    expect(denied(`/ip4/192.168.0.2/tcp/4001/p2p/${RELAY}`)).toBe(true)
    expect(denied(`/ip4/192.168.0.2/tcp/22/p2p/${RELAY}/p2p-circuit/p2p/${EXIT}`)).toBe(true)
    expect(denied(`/ip4/10.9.9.9/tcp/4001/p2p/${EXIT}`)).toBe(true)
    // an IPv4 address inside IPv6, as a lookup may give it: NAT64 and IPv4-mapped
    expect(denied(`/ip6/64:ff9b::a00:1/tcp/4001/p2p/${EXIT}`)).toBe(true)
    expect(denied(`/ip6/::ffff:c0a8:101/tcp/4001/p2p/${EXIT}`)).toBe(true)
    expect(denied(`/ip6/64:ff9b::b4d:105/tcp/4001/p2p/${EXIT}`)).toBe(false)
    // in a local testnet nothing is refused
    expect(privateDialGater({ publicOnly: false, given: new GivenAddresses([]) }).denyDialMultiaddr).toBeUndefined()
  })

  it('a given address by name: the IPs the resolver found for that name, for that peer only', async () => {
    const given = new GivenAddresses([`/dns4/Boot.Example/tcp/4001/p2p/${RELAY}`])
    const g = privateDialGater({ publicOnly: true, given })
    const denied = (a: string): boolean => g.denyDialMultiaddr!(multiaddr(a)) as boolean
    expect(denied(`/ip4/10.1.2.3/tcp/4001/p2p/${RELAY}`)).toBe(true)
    const lookups: Record<string, string> = { 'boot.example': '10.1.2.3', 'evil.example': '10.7.7.7' }
    const resolver = new DnsNameResolver({ given, lookup: async host => [{ address: lookups[host], family: 4 }] })
    await resolver.resolve(multiaddr(`/dns4/boot.example/tcp/4001/p2p/${RELAY}`))
    // a name stored under the same id by someone else resolves, but gives nothing to let through
    expect((await resolver.resolve(multiaddr(`/dns4/evil.example/tcp/22/p2p/${RELAY}`))).map(String)).toEqual([`/ip4/10.7.7.7/tcp/22/p2p/${RELAY}`])
    expect(denied(`/ip4/10.1.2.3/tcp/4001/p2p/${RELAY}`)).toBe(false)
    expect(denied(`/ip4/10.7.7.7/tcp/22/p2p/${RELAY}`)).toBe(true)
    expect(denied(`/ip4/10.1.2.3/tcp/4001/p2p/${EXIT}`)).toBe(true)
  })
})

describe('a node on the public network', () => {
  /** A plain peer on loopback; counts the connections it accepts. */
  async function peer (): Promise<{ libp2p: Libp2p, port: number, inbound: () => number }> {
    const libp2p = await createLibp2p({ privateKey: await generateKeyPair('Ed25519'), addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify() } })
    stops.push(async () => { await libp2p.stop() })
    let inbound = 0
    libp2p.addEventListener('connection:open', e => { if (e.detail.direction === 'inbound') inbound++ })
    return { libp2p, port: Number(libp2p.getMultiaddrs()[0].getComponents().find(c => c.name === 'tcp')?.value), inbound: () => inbound }
  }

  /**
   * The node's own libp2p, as on the public network (or in a local testnet),
   * with one thing changed: the lookup its resolver makes, which says every
   * name is 127.0.0.1, as a name pointed at a private address would.
   */
  async function node (options: { bootstrap?: string[], localTestnet?: boolean, asked?: string[], names?: Record<string, string> } = {}): Promise<Libp2p> {
    const config = structuredClone(defaultConfig) as SparebandConfig
    config.listen = ['/ip4/127.0.0.1/tcp/0']
    config.network.local_testnet = options.localTestnet === true
    config.network.bootstrap = options.bootstrap ?? []
    config.exit.enabled = false
    const opts = libp2pOptions({ privateKey: await generateKeyPair('Ed25519'), config, dnsLookup: async host => { options.asked?.push(host); return [{ address: options.names?.[host] ?? '127.0.0.1', family: 4 }] } })
    const libp2p = await createLibp2p(opts)
    stops.push(async () => { await libp2p.stop() })
    return libp2p
  }

  it('does not dial a DNS name a peer is known by once it points at a private address; the peer hears nothing', async () => {
    const target = await peer()
    const asked: string[] = []
    const n = await node({ asked })
    // what an ad or an identify could name: the peer store keeps a name as it is
    await n.peerStore.merge(target.libp2p.peerId, { multiaddrs: [multiaddr(`/dns4/exit.example/tcp/${target.port}`)] })
    expect((await n.peerStore.get(target.libp2p.peerId)).addresses.map(a => a.multiaddr.toString())).toEqual([`/dns4/exit.example/tcp/${target.port}`])
    const err = await n.dial(target.libp2p.peerId, { signal: AbortSignal.timeout(10_000) }).then(() => undefined, e => e)
    expect(err?.name).toBe('DialDeniedError')
    expect(asked).toEqual(['exit.example'])
    expect(target.inbound()).toBe(0)
    expect(n.getConnections(target.libp2p.peerId)).toEqual([])
  })

  it('dials a given bootstrap peer by its name, private as it is; in a local testnet any peer', async () => {
    const boot = await peer()
    const asked: string[] = []
    const n = await node({ bootstrap: [`/dns4/boot.example/tcp/${boot.port}/p2p/${boot.libp2p.peerId.toString()}`], asked })
    await waitFor(() => n.getConnections(boot.libp2p.peerId).length > 0, { what: 'the connection to the bootstrap peer', timeoutMs: 10_000 })
    expect(boot.inbound()).toBeGreaterThan(0)
    expect(asked).toContain('boot.example')

    // a local testnet looks nothing up itself, and refuses no address (localhost: the system's resolver)
    const other = await peer()
    const local = await node({ localTestnet: true })
    await local.peerStore.merge(other.libp2p.peerId, { multiaddrs: [multiaddr(`/dns4/localhost/tcp/${other.port}`)] })
    await local.dial(other.libp2p.peerId, { signal: AbortSignal.timeout(10_000) })
    await waitFor(() => other.inbound() === 1, { what: 'the connection at the peer', timeoutMs: 10_000 })
  })

  it('does not dial a private address stored under a given peer\'s id by someone else: only the given address is let through', async () => {
    // the given bootstrap peer is down (nothing listens at its port); a name stored under its id points at another loopback address
    const closed = createServer()
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
    const closedPort = (closed.address() as AddressInfo).port
    await new Promise(resolve => closed.close(resolve))
    let victimConnections = 0
    const victim = createServer(socket => { victimConnections++; socket.destroy() })
    await new Promise<void>(resolve => victim.listen(0, '127.0.0.2', resolve))
    stops.push(async () => { await new Promise(resolve => victim.close(resolve)) })
    const victimPort = (victim.address() as AddressInfo).port
    const boot = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const asked: string[] = []
    const n = await node({ bootstrap: [`/dns4/boot.example/tcp/${closedPort}/p2p/${boot.toString()}`], names: { 'boot.example': '127.0.0.1', 'evil.example': '127.0.0.2' }, asked })
    // its bootstrap dial has looked the given name up (and failed): that name's address is the given one
    await waitFor(() => asked.includes('boot.example'), { what: 'the bootstrap dial', timeoutMs: 10_000 })
    // what a DHT peer can do: name more addresses of any peer id
    await n.peerStore.merge(boot, { multiaddrs: [multiaddr(`/dns4/evil.example/tcp/${victimPort}`)] })
    const err = await n.dial(boot, { signal: AbortSignal.timeout(10_000) }).then(() => undefined, e => e)
    expect(err).toBeDefined()
    expect(victimConnections).toBe(0)
  })
})
