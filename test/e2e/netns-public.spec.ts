import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tempDir, waitFor } from '../utils/cli.ts'
import { NatTopology, NetnsNode, NetnsTarget, PUBLIC_PLAN, execIn, netnsUnusable } from '../utils/netns.ts'

const MiB = 1024 * 1024
const unusable = netnsUnusable()
if (unusable != null) console.warn(`netns-public e2e: SKIPPED, ${unusable} (it needs root, ip netns and iptables; .ci/run installs iptables)`)

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex')
const [RELAY_IP, CONSUMER_IP, WEB_IP] = PUBLIC_PLAN.publicHosts

/**
 * The public network as an operator at home meets it: not a local testnet
 * (so no private address is taken, in ads, in the DHT or as a tunnel's
 * target), and an exit behind a real NAT started with the defaults alone
 * (its listen addresses, relay, DHT mode and exit policy), naming no relay.
 * Namespaces as in netns-nat.spec, with the public side at public
 * addresses (PUBLIC_PLAN): a relay (11.77.1.2) that is also the bootstrap
 * peer, a consumer (11.77.1.3) and a web server (11.77.1.4); the exit at
 * home (10.77.2.2) behind the router's 11.77.1.1.
 *
 * What must hold: the exit sees that it has no public address, so it is a
 * DHT client and relays for nobody (a relay nobody can dial would hand out
 * circuits that fail); the relay, at a public address, is a DHT server and
 * relays; the exit's relay search finds the relay and reserves on it; the
 * consumer finds the exit through the DHT and its bytes arrive intact
 * from the web server, which sees the NAT's address; a private address as
 * the target is refused by the default policy before anything is dialled.
 */
describe.skipIf(unusable != null)('the public network: an exit at home behind NAT with the defaults (skipped unless root with ip netns and iptables)', () => {
  const topo = new NatTopology(PUBLIC_PLAN)
  let web: NetnsTarget | undefined
  /** A server on the exit's home network, at the exit's own address: the operator's LAN. */
  let lan: NetnsTarget | undefined
  let relay: NetnsNode | undefined
  let exit: NetnsNode | undefined
  let consumer: NetnsNode | undefined
  let network = ''
  let relayAddr = ''
  let socksPort = 0
  let httpPort = 0

  beforeAll(async () => {
    const dir = await tempDir('sb-netns-public-')
    network = join(dir, 'netns-public.json')
    // a network of its own, as an operator publishes one: not a local testnet
    await writeFile(network, JSON.stringify({ name: 'netns-public', dht_protocol: '/spareband/kad/1.0.0', bootstrap: [] }))
    await topo.build()
    web = new NetnsTarget(topo.pub, WEB_IP, 16 * MiB)
    lan = new NetnsTarget(topo.home, PUBLIC_PLAN.exit, 1024)
    const webReady = Promise.all([web.ready(), lan.ready()])
    relay = await NetnsNode.start(topo.pub, { network, region: 'nl', args: ['--no-supply', '--listen', `/ip4/${RELAY_IP}/tcp/4001`] })
    const relayStatus = await relay.status()
    relayAddr = relayStatus.addresses.find((a: string) => a.startsWith(`/ip4/${RELAY_IP}/tcp/4001/`))
    expect(relayAddr, `the relay's address, among ${JSON.stringify(relayStatus.addresses)}`).toMatch(/\/p2p\//)
    await webReady
    // the defaults: listen on every interface (and search for relays), relay and DHT "auto", the default exit policy
    // with the two servers' ports opened (the address rules decide)
    exit = await NetnsNode.start(topo.home, { network, region: 'de', args: ['--bootstrap', relayAddr, '--exit-ports', `${web.port},${lan!.port}`] })
    consumer = await NetnsNode.start(topo.pub, { network, region: 'jp', args: ['--no-supply', '--listen', `/ip4/${CONSUMER_IP}/tcp/4001`, '--bootstrap', relayAddr] })
    const consumerStatus = await consumer.status()
    socksPort = consumerStatus.proxy.socksPort
    httpPort = consumerStatus.proxy.httpPort
  }, 180_000)

  afterAll(async () => {
    await Promise.all([consumer, exit, relay].map(async n => n?.proc.kill()))
    await web?.close()
    await lan?.close()
    await topo.teardown()
  }, 60_000)

  it('the relay, at a public address, is a DHT server and relays; the exit at home is a DHT client, relays for nobody, and is reachable through the relay it found', async () => {
    const relayStatus = await waitFor(async () => {
      const s = await relay!.status()
      return s.dht.mode === 'server' && s.relayService?.running === true ? s : undefined
    }, { timeoutMs: 30_000, intervalMs: 500, what: 'the relay to be a DHT server and relay' })
    expect(relayStatus.relayService.reason).toBe('public')

    const exitStatus = await waitFor(async () => {
      const s = await exit!.status()
      return s.relaysFound?.length > 0 && s.addresses.some((a: string) => a.includes('/p2p-circuit')) ? s : undefined
    }, { timeoutMs: 60_000, intervalMs: 500, what: 'the exit\'s reservation on a relay its search found' })
    expect(exitStatus.dht.mode).toBe('client')
    expect(exitStatus.relayService).toMatchObject({ running: false, reason: 'no public address', reservations: 0 })
    expect(JSON.stringify(exitStatus.relaysFound)).toContain(relayStatus.peerId)
    // and their logs say so: the relay's start line, or the line a moment later once its address is confirmed
    await waitFor(() => /dht=server|DHT server: this node has a public address/.test(relay!.proc.output) && /relay=on|relay service started/.test(relay!.proc.output),
      { timeoutMs: 10_000, what: 'the relay\'s log to name its roles' })
    expect(exit!.proc.output).toMatch(/dht=client/)
    expect(exit!.proc.output).toMatch(/relay="?off \(no public address\)/)
    expect(exit!.proc.output).not.toMatch(/relay service started|DHT server:/)
    const circuits = exitStatus.addresses.filter((a: string) => a.includes('/p2p-circuit'))
    expect(circuits.every((a: string) => a.includes(relayStatus.peerId)), JSON.stringify(circuits)).toBe(true)
  }, 120_000)

  it('16 MiB from the web server through the consumer\'s SOCKS5 proxy (region de) arrive with the same SHA-256, from the NAT\'s address', async () => {
    const url = `http://${WEB_IP}:${web!.port}/blob`
    // the consumer finds the exit through the DHT: retried while its ad is on the way
    const r = await waitFor(async () => {
      const got = await execIn(topo.pub, 'curl', ['-sS', '--max-time', '60', '--proxy', `socks5h://region-de:x@127.0.0.1:${socksPort}`, url], { timeoutMs: 70_000 })
      return got.code === 0 ? got : undefined
    }, { timeoutMs: 120_000, intervalMs: 2000, what: 'a download through an exit in region de' })
    expect(r!.stdout.byteLength).toBe(16 * MiB)
    expect(sha256(r!.stdout)).toBe(web!.blobSha256)
    const seen = await web!.report()
    expect(seen.remotes.length).toBeGreaterThan(0)
    expect(seen.remotes.every(a => a === PUBLIC_PLAN.routerPublic), JSON.stringify(seen.remotes)).toBe(true)
  }, 180_000)

  it('the default exit policy refuses the exit\'s own network as the target, and dials nothing there', async () => {
    const before = (await exit!.status()).exit.denied
    const url = `http://${PUBLIC_PLAN.exit}:${lan!.port}/blob`
    const r = await execIn(topo.pub, 'curl', ['-sS', '--max-time', '30', '-w', '\\n%{http_code}', '--proxy', `http://127.0.0.1:${httpPort}`, '--proxy-user', 'region-de:x', url], { timeoutMs: 40_000 })
    const text = r.stdout.toString()
    expect(text.trim().split('\n').at(-1), text).toBe('403')
    expect(text, 'the reason, in the body').toContain(`POLICY_DENIED: ${PUBLIC_PLAN.exit} is a private address (an exit takes such targets only when its operator allows them, for a local testnet: --allow-private-targets)`)
    expect((await lan!.report()).connections).toBe(0)
    expect((await exit!.status()).exit.denied).toBe(before + 1)
  }, 60_000)

  it('the consumer\'s relayed connection to the exit gives way to a direct one the exit opens through its NAT, and tunnels take it', async () => {
    const exitId = (await exit!.status()).peerId
    // DCUtR (or the exit's own dial to a DHT server): a connection opened from inside the NAT
    const direct = await waitFor(async () => {
      const peers = await consumer!.peers()
      const p = peers.find((x: any) => x.peerId === exitId)
      return p != null && p.limited === false && !p.addresses.some((a: string) => a.includes('/p2p-circuit')) ? p : undefined
    }, { timeoutMs: 60_000, intervalMs: 1000, what: 'a direct connection from the exit to the consumer, and no relayed one' })
    // the exit dialled out through its NAT: the consumer sees the router's public address
    expect(direct.addresses.every((a: string) => a.startsWith(`/ip4/${PUBLIC_PLAN.routerPublic}/`)), JSON.stringify(direct)).toBe(true)
    await waitFor(async () => (await relay!.status()).relayService.circuits === 0, { timeoutMs: 30_000, intervalMs: 500, what: 'no circuit left through the relay' })
    const url = `http://${WEB_IP}:${web!.port}/blob`
    const r = await execIn(topo.pub, 'curl', ['-sS', '--max-time', '60', '--proxy', `socks5h://region-de:x@127.0.0.1:${socksPort}`, url], { timeoutMs: 70_000 })
    expect(r.code, r.stderr).toBe(0)
    expect(sha256(r.stdout)).toBe(web!.blobSha256)
    // carried on the direct connection: none through the relay, and the consumer still has no relayed one
    expect((await relay!.status()).relayService.circuits).toBe(0)
    const after = (await consumer!.peers()).find((x: any) => x.peerId === exitId)
    expect(after.addresses.some((a: string) => a.includes('/p2p-circuit')), JSON.stringify(after)).toBe(false)

    // seconds on: the public nodes need no relay, and took no slot on one (its 32 are for exits behind NAT)
    const consumerStatus = await consumer!.status()
    expect(consumerStatus.relaysFound ?? [], JSON.stringify(consumerStatus.relaysFound)).toEqual([])
    expect(consumerStatus.addresses.some((a: string) => a.includes('/p2p-circuit')), JSON.stringify(consumerStatus.addresses)).toBe(false)
    // each is a relay too: the only reservations among them all are the exit's, which seeks two
    // (network.relay_reservations), and has these two relays to take them on
    expect(consumerStatus.relayService).toMatchObject({ running: true })
    await waitFor(async () => {
      const counts = await Promise.all([consumer!, relay!].map(async n => (await n.status()).relayService.reservations))
      return counts.join() === '1,1'
    }, { timeoutMs: 30_000, intervalMs: 500, what: 'the exit\'s reservation on each public node, and no other' })
    const relayStatus = await relay!.status()
    expect(relayStatus.relaysFound ?? [], JSON.stringify(relayStatus.relaysFound)).toEqual([])
    const exitStatus = await exit!.status()
    expect((exitStatus.relaysFound ?? []).length, JSON.stringify(exitStatus.relaysFound)).toBe(2)
  }, 120_000)
})
