import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createServer, connect } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { createSparebandNode } from '../../src/index.ts'
import { TUNNEL_PROTOCOL } from '../../src/constants.ts'
import { isLiveTunnel } from '../../src/relay/live-tunnels.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import { socksConnect } from '../utils/socks-client.ts'
import { startEchoServer } from '../utils/in-process.ts'
import type { EchoServer } from '../utils/in-process.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { Connection } from '@libp2p/interface'
import type { IdentifyPush } from '@libp2p/identify'
import type { Server, Socket, AddressInfo } from 'node:net'

/**
 * A port in front of C's libp2p listener: C's firewall. Closed, it answers
 * every connection with a RST; open, it forwards to C. Only ever 127.0.0.1.
 */
interface Firewall { port: number, open: boolean, accepted: number, refused: number, close: () => Promise<void> }

async function startFirewall (target: () => number): Promise<Firewall> {
  const sockets = new Set<Socket>()
  const track = (s: Socket): void => { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}) }
  const fw: Firewall = { port: 0, open: false, accepted: 0, refused: 0, close: async () => {} }
  const server: Server = createServer(s => {
    track(s)
    if (!fw.open) { fw.refused++; s.resetAndDestroy(); return }
    fw.accepted++
    const up = connect({ host: '127.0.0.1', port: target() })
    track(up)
    up.on('close', () => s.destroy())
    s.on('close', () => up.destroy())
    s.pipe(up).pipe(s)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  fw.port = (server.address() as AddressInfo).port
  fw.close = async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  return fw
}

/**
 * Relay R, exit E behind NAT, consumer C; real libp2p over TCP on 127.0.0.1.
 *
 * DCUtR only upgrades to addresses it takes for public (@libp2p/dcutr
 * `isPublicAndDialable`): 127.0.0.0/8 never is, so on plain loopback it gives
 * up ("no public addresses" / "had no dialable multiaddrs"). A DNS address
 * counts as public, so C announces `/dns4/localhost/tcp/<firewall port>`
 * (localhost is 127.0.0.1 in /etc/hosts). E advertises nothing but its relay
 * address: had it advertised its TCP listener, the first stream C opens to E
 * would already dial it directly (libp2p never reuses a limited connection
 * for `dialProtocol(peerId)` while it knows another address), and no tunnel
 * would ever run over the relay.
 *
 * While C's firewall is closed, DCUtR on E (the inbound side of the relayed
 * connection) tries the unilateral upgrade, is refused, and tunnels run over
 * the relay. Once it opens, C's identify push makes E's DCUtR try again; E
 * dials C directly and closes the relayed connection, and new tunnels take
 * the direct one.
 */
describe('an exit behind NAT: relayed first, then upgraded by DCUtR', () => {
  let relay: SparebandNode
  let exit: SparebandNode
  let consumer: SparebandNode
  let echo: EchoServer
  let echoPort: number
  let firewall: Firewall
  let consumerPort = 0
  let exitTcpPort = 0
  let relayed: Connection
  /** Connections E has seen open from C, however short-lived: when, how and by which address (for a failure's message). */
  const connectionsFromConsumer: string[] = []

  /** Open connections between C and E, as each side sees them. */
  const fromConsumer = (): Connection[] => consumer.libp2p.getConnections(exit.peerId).filter(c => c.status === 'open')
  const fromExit = (): Connection[] => exit.libp2p.getConnections(consumer.peerId).filter(c => c.status === 'open')
  const tunnelStreams = (c: Connection): number => c.streams.filter(s => s.protocol === TUNNEL_PROTOCOL).length
  /** Streams carrying a tunnel now; warm ones, opened ahead of need, are not. */
  const liveTunnels = (c: Connection): number => c.streams.filter(isLiveTunnel).length
  const isCircuit = (c: Connection): boolean => c.remoteAddr.toString().includes('/p2p-circuit')
  const describeConns = (): string => JSON.stringify(fromConsumer().map(c => ({ addr: c.remoteAddr.toString(), limited: c.limits != null, tunnels: tunnelStreams(c) })))

  /** A tunnel through C's SOCKS5 proxy to the echo server; calls `during` while it is open. */
  const echoThroughTunnel = async (during: () => void): Promise<void> => {
    const socksPort = (consumer.status() as any).proxy.socksPort
    const { socket, reply } = await socksConnect(socksPort, '127.0.0.1', echoPort)
    try {
      expect(reply).toBe(0)
      const data = randomBytes(256 * 1024)
      const got = createHash('sha256')
      let n = 0
      const done = new Promise<void>((resolve, reject) => {
        socket.on('data', d => { got.update(d); n += d.byteLength; if (n >= data.byteLength) resolve() })
        socket.once('close', () => reject(new Error(`tunnel closed after ${n} of ${data.byteLength} bytes`)))
      })
      socket.write(data)
      await done
      expect(n).toBe(data.byteLength)
      expect(got.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'))
      during()
    } finally {
      socket.destroy()
    }
  }

  beforeAll(async () => {
    echo = await startEchoServer()
    echoPort = echo.port
    firewall = await startFirewall(() => consumerPort)

    const base = { api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8 } }
    const tcpPort = (node: SparebandNode, set: (port: number) => void): void => {
      // with `announce` set, getMultiaddrs() no longer shows the listener
      node.libp2p.addEventListener('transport:listening', e => {
        for (const a of e.detail.getAddrs()) {
          const m = /^\/ip4\/127\.0\.0\.1\/tcp\/(\d+)$/.exec(a.toString())
          if (m != null) set(Number(m[1]))
        }
      })
    }

    relay = await createSparebandNode({
      dataDir: await tempDir('sb-dcutr-'),
      config: { ...base, listen: ['/ip4/127.0.0.1/tcp/0'], network: { local_testnet: true }, exit: { enabled: false } }
    })
    await relay.start()
    const relayAddr = relay.libp2p.getMultiaddrs()[0].toString()
    expect(relayAddr).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)

    // E listens on TCP and reserves a slot on R, but advertises only the relay address
    exit = await createSparebandNode({
      dataDir: await tempDir('sb-dcutr-'),
      config: {
        ...base,
        region: 'de',
        listen: ['/ip4/127.0.0.1/tcp/0', `${relayAddr}/p2p-circuit`],
        announce: [`${relayAddr}/p2p-circuit`],
        network: { local_testnet: true },
        exit: { allow_private_targets: true, allowed_ports: [echoPort] }
      }
    })
    tcpPort(exit, p => { exitTcpPort = p })
    await exit.start()
    await waitFor(() => (relay.libp2p.services.relay as any).server.reservations.has(exit.peerId), { what: 'E\'s reservation on R' })
    expect(exitTcpPort).toBeGreaterThan(0)
    expect(exit.libp2p.getMultiaddrs().map(String)).toEqual([`${relayAddr}/p2p-circuit/p2p/${exit.peerId}`])

    // C: a DHT client (else E's routing table would ping it, a second way to a direct connection)
    consumer = await createSparebandNode({
      dataDir: await tempDir('sb-dcutr-'),
      config: {
        ...base,
        listen: ['/ip4/127.0.0.1/tcp/0'],
        announce: [`/dns4/localhost/tcp/${firewall.port}`],
        network: { local_testnet: true, dht_server: false },
        exit: { enabled: false }
      }
    })
    tcpPort(consumer, p => { consumerPort = p })
    await consumer.start()
    expect(consumerPort).toBeGreaterThan(0)

    exit.libp2p.addEventListener('connection:open', e => {
      const c = e.detail
      if (c.remotePeer.equals(consumer.peerId)) connectionsFromConsumer.push(`${new Date().toISOString()} ${c.direction} ${c.remoteAddr.toString()} limited=${c.limits != null}`)
    })
    relayed = await consumer.libp2p.dial(multiaddr(`${relayAddr}/p2p-circuit/p2p/${exit.peerId}`))
    await waitFor(async () => (await consumer.peers()).some(p => p.peerId === exit.peerId.toString() && p.agent?.includes('exit') === true), { what: 'C to identify E through the relay' })
  }, 60_000)

  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    await relay?.stop()
    await echo?.close()
    await firewall?.close()
  })

  it('C first reaches E only through the relay', async () => {
    expect(isCircuit(relayed)).toBe(true)
    expect(relayed.limits != null).toBe(true)
    expect(relayed.limits?.bytes).toBeGreaterThan(0n)
    // E's DCUtR tried the direct way (the unilateral upgrade to C's "public" address) and the firewall refused it
    await waitFor(() => firewall.refused > 0, { timeoutMs: 10_000, what: 'E\'s DCUtR to try C\'s address' })
    expect(firewall.accepted).toBe(0)
    const conns = fromConsumer()
    expect(conns.length).toBeGreaterThan(0)
    expect(conns.every(c => c.limits != null && isCircuit(c))).toBe(true)
    expect(fromExit().every(c => c.limits != null && isCircuit(c))).toBe(true)
    // the only address C knows for E is the circuit one
    const known = (await consumer.libp2p.peerStore.get(exit.peerId)).addresses.map(a => a.multiaddr.toString())
    expect(known.length).toBeGreaterThan(0)
    expect(known.every(a => a.includes('/p2p-circuit'))).toBe(true)
  })

  it('tunnels run over the relayed connection, all of them on that one circuit', async () => {
    for (let i = 0; i < 3; i++) {
      await echoThroughTunnel(() => {
        const conns = fromConsumer()
        expect(conns.every(c => c.limits != null), describeConns()).toBe(true)
        expect(tunnelStreams(relayed), describeConns()).toBeGreaterThanOrEqual(1)
        expect((exit.status() as any).exit.tunnelsOpen).toBe(1)
      })
    }
    // libp2p's dialProtocol never reuses a limited connection: had the tunnels used it, each
    // (and each warm and receipt stream) would have built a circuit of its own through R
    expect(connectionsFromConsumer.length, connectionsFromConsumer.join('\n')).toBe(1)
    expect(fromConsumer()).toEqual([relayed])
    // the relayed connection is still there, and nothing went direct
    expect(relayed.status).toBe('open')
    expect(fromConsumer().every(c => c.limits != null)).toBe(true)
    expect(firewall.accepted).toBe(0)
  })

  it('once C is reachable, DCUtR upgrades to a direct connection and closes the relayed one once the tunnel on it has ended', async () => {
    // a tunnel open on the relayed connection across the upgrade: DCUtR's close of that
    // connection ended its streams with a FIN, which C read as the end of the echo
    const socksPort = (consumer.status() as any).proxy.socksPort
    const { socket, reply } = await socksConnect(socksPort, '127.0.0.1', echoPort)
    expect(reply).toBe(0)
    const sent = createHash('sha256')
    const got = createHash('sha256')
    let received = 0
    let ended = false
    socket.on('data', d => { got.update(d); received += d.byteLength })
    socket.on('end', () => { ended = true })
    const send = async (bytes: number): Promise<void> => {
      const data = randomBytes(bytes)
      sent.update(data)
      const want = received + bytes
      socket.write(data)
      await waitFor(() => { if (ended) throw new Error(`the tunnel ended after ${received} of ${want} bytes`); return received >= want }, { timeoutMs: 10_000, what: `${want} bytes echoed` })
    }
    await send(256 * 1024)
    expect(liveTunnels(relayed), describeConns()).toBe(1)
    // E's DCUtR closes its side of the relayed connection: noted here, on top of the node's own wrapper
    const relayedAtExit = fromExit()
    expect(relayedAtExit).toHaveLength(1)
    let closeAsked = 0
    const guarded = relayedAtExit[0].close.bind(relayedAtExit[0])
    relayedAtExit[0].close = async options => { closeAsked++; await guarded(options) }

    firewall.open = true
    // E's DCUtR runs on every identify over the relayed connection. C pushes its identify
    // (as it does on any change of its own addresses or protocols) so that E tries again
    // now; without the push, the next relayed connection C happens to open would do it
    await (consumer.libp2p.services.identifyPush as IdentifyPush).push()
    await waitFor(() => closeAsked > 0 && fromConsumer().some(c => c.limits == null),
      { timeoutMs: 15_000, what: 'a direct connection from C to E, and DCUtR closing the relayed one' })
      .catch(err => { throw new Error(`${err.message}; C to E now: ${describeConns()}, first relayed connection ${relayed.status}`) })
    // the tunnel goes on, on the relayed connection, after the close was asked for
    await send(512 * 1024)
    expect(relayed.status).toBe('open')
    expect(liveTunnels(relayed), describeConns()).toBe(1)
    socket.end()
    await waitFor(() => ended, { what: 'the echo\'s end' })
    expect(received).toBe(768 * 1024)
    expect(got.digest('hex')).toBe(sent.digest('hex'))
    socket.destroy()
    // and once it has ended, the relayed connection goes
    await waitFor(() => relayed.status === 'closed' && fromConsumer().length > 0 && fromConsumer().every(c => c.limits == null),
      { timeoutMs: 15_000, what: 'the relayed connection closed once its tunnel ended' })
      .catch(err => { throw new Error(`${err.message}; C to E now: ${describeConns()}, first relayed connection ${relayed.status}`) })
    expect(closeAsked).toBe(1)
    expect(firewall.accepted).toBeGreaterThanOrEqual(1)
    // E dialled C's announced address (the unilateral upgrade): outbound from E, inbound at C
    const direct = fromConsumer()
    expect(direct.every(c => c.direction === 'inbound' && !isCircuit(c) && c.remoteAddr.toString().startsWith('/ip4/127.0.0.1/tcp/'))).toBe(true)
    const atExit = fromExit().filter(c => c.limits == null)
    expect(atExit.map(c => c.remoteAddr.toString())).toContain(`/dns4/localhost/tcp/${firewall.port}/p2p/${consumer.peerId}`)
    expect(atExit.every(c => c.direction === 'outbound')).toBe(true)
    // C never dialled E's own TCP listener: that address was never advertised
    expect(direct.some(c => c.remoteAddr.toString().includes(`/tcp/${exitTcpPort}/`))).toBe(false)
  })

  it('new tunnels run on the direct connection', async () => {
    const tunnelsBefore = (exit.status() as any).exit.tunnelsTotal
    for (let i = 0; i < 2; i++) {
      await echoThroughTunnel(() => {
        const conns = fromConsumer()
        const direct = conns.filter(c => c.limits == null)
        expect(direct.length, describeConns()).toBeGreaterThanOrEqual(1)
        expect(direct.reduce((n, c) => n + tunnelStreams(c), 0), describeConns()).toBeGreaterThanOrEqual(1)
        // no tunnel stream on a limited connection, on either side
        expect(conns.filter(c => c.limits != null).reduce((n, c) => n + tunnelStreams(c), 0), describeConns()).toBe(0)
        expect(fromExit().filter(c => c.limits != null).reduce((n, c) => n + tunnelStreams(c), 0)).toBe(0)
        expect(fromExit().filter(c => c.limits == null).reduce((n, c) => n + tunnelStreams(c), 0)).toBeGreaterThanOrEqual(1)
        expect((exit.status() as any).exit.tunnelsOpen).toBe(1)
      })
    }
    expect((exit.status() as any).exit.tunnelsTotal).toBe(tunnelsBefore + 2)
    // and the relayed connection did not come back
    expect(fromConsumer().some(c => c.limits == null)).toBe(true)
    expect(fromConsumer().filter(c => c.limits != null).reduce((n, c) => n + tunnelStreams(c), 0)).toBe(0)
  })
})
