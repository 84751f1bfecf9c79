import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import { waitFor } from '../utils/cli.ts'
import { CONSUMER_IP, EXIT_IP, NatTopology, NetnsNode, NetnsTarget, RELAY_IP, ROUTER_PUBLIC_IP, execIn, netnsUnusable } from '../utils/netns.ts'

const MiB = 1024 * 1024
const unusable = netnsUnusable()
if (unusable != null) console.warn(`netns-nat e2e: SKIPPED, ${unusable} (it needs root, ip netns and iptables; .ci/run installs iptables)`)

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex')
const tcpPortOf = (addrs: string[], ip: string): number | undefined => {
  for (const a of addrs) {
    const m = new RegExp(`^/ip4/${ip.replaceAll('.', '\\.')}/tcp/(\\d+)(/|$)`).exec(a)
    if (m != null && !a.includes('/p2p-circuit')) return Number(m[1])
  }
  return undefined
}

/**
 * A real exit behind a real NAT, reached through a relay. Three network
 * namespaces made by the test (test/utils/netns.ts): "public" holds the
 * relay (10.77.1.2) and the consumer (10.77.1.3); "router" masquerades what
 * leaves on its public side (10.77.1.1); "home" (10.77.2.0/24, default
 * route via the router) holds the exit (10.77.2.2) and the target HTTP
 * server on the exit's own address. The public side has no route into the
 * home network, so nothing can dial the exit: it names the relay in its
 * listen addresses (`<relay>/p2p-circuit`), and the consumer, which
 * bootstraps from the relay only, finds it in the DHT and reaches it
 * through the relay. Every process is a real `spareband start` run with
 * `ip netns exec`; curl runs in the public namespace.
 *
 * DCUtR upgrades only to addresses it takes for public, and every address
 * here is private (10.77.x), so it is not expected to go direct; what the
 * test asserts holds either way: a connection between consumer and exit
 * that is not relayed can only have been opened by the exit, through the
 * NAT (inbound at the consumer, from the router's public address).
 */
describe.skipIf(unusable != null)('an exit behind a real NAT (network namespaces), reached through a relay (skipped unless root with ip netns and iptables)', () => {
  const topo = new NatTopology()
  let target: NetnsTarget | undefined
  let relay: NetnsNode | undefined
  let exit: NetnsNode | undefined
  let consumer: NetnsNode | undefined
  let relayAddr = ''
  let exitPeerId = ''
  let exitTcpPort: number | undefined
  let socksPort = 0
  let httpPort = 0

  beforeAll(async () => {
    const t = Date.now()
    await topo.build()
    target = new NetnsTarget(topo.home, EXIT_IP, 64 * MiB)
    const targetReady = target.ready()
    relay = await NetnsNode.start(topo.pub, { region: 'nl', args: ['--no-supply', '--listen', `/ip4/${RELAY_IP}/tcp/0`] })
    const relayStatus = await relay.status()
    relayAddr = relayStatus.addresses.find((a: string) => a.startsWith(`/ip4/${RELAY_IP}/tcp/`))
    expect(relayAddr, JSON.stringify(relayStatus.addresses)).toMatch(/\/p2p\//)
    await targetReady

    // the exit listens on its home address too, as an exit at home does: nobody outside can dial it
    exit = await NetnsNode.start(topo.home, {
      region: 'de',
      args: ['--listen', `/ip4/${EXIT_IP}/tcp/0`, '--listen', `${relayAddr}/p2p-circuit`, '--allow-private-targets', '--exit-ports', String(target.port)]
    })
    const exitStatus = await waitFor(async () => {
      const s = await exit!.status()
      return s.relays?.some((r: any) => r.reserved) === true && s.addresses.some((a: string) => a.includes('/p2p-circuit')) ? s : undefined
    }, { timeoutMs: 60_000, intervalMs: 500, what: 'the exit\'s reservation on the relay' })
    exitPeerId = exitStatus.peerId
    exitTcpPort = tcpPortOf(exitStatus.addresses, EXIT_IP)

    // a DHT client, as in dcutr.spec: a DHT server would be dialled by the exit's routing table
    // (through the NAT), a direct connection that makes the relay moot
    consumer = await NetnsNode.start(topo.pub, {
      region: 'jp',
      config: '[network]\ndht_server = false\n',
      args: ['--no-supply', '--listen', `/ip4/${CONSUMER_IP}/tcp/0`, '--bootstrap', relayAddr]
    })
    const consumerStatus = await consumer.status()
    socksPort = consumerStatus.proxy.socksPort
    httpPort = consumerStatus.proxy.httpPort
    console.log(`netns-nat: topology ${topo.suffix} (${topo.iptables}), nodes up in ${Date.now() - t} ms`)
  }, 180_000)

  afterAll(async () => {
    await Promise.all([consumer, exit, relay].map(async n => n?.proc.kill()))
    await target?.close()
    await topo.teardown()
  }, 60_000)

  it('the exit is behind the NAT: the relay sees it from the router\'s public address, and the public side cannot dial it', async () => {
    const peers = await relay!.peers()
    const atRelay = peers.find((p: any) => p.peerId === exitPeerId)
    expect(atRelay, JSON.stringify(peers)).toBeDefined()
    expect(atRelay.direction).toBe('inbound')
    expect(atRelay.limited).toBe(false)
    expect(atRelay.addresses.length).toBeGreaterThan(0)
    expect(atRelay.addresses.every((a: string) => a.startsWith(`/ip4/${ROUTER_PUBLIC_IP}/tcp/`)), JSON.stringify(atRelay.addresses)).toBe(true)

    // from the public namespace, neither the exit's libp2p port nor the target opens (curl 7: could not connect)
    expect(exitTcpPort).toBeGreaterThan(0)
    for (const port of [exitTcpPort!, target!.port]) {
      const r = await execIn(topo.pub, 'curl', ['-sS', '--connect-timeout', '3', `http://${EXIT_IP}:${port}/`])
      expect([7, 28], `curl to ${EXIT_IP}:${port} from the public side: ${r.code} ${r.stderr}`).toContain(r.code)
    }
  }, 120_000)

  it('64 MB from the target through the consumer\'s SOCKS5 proxy (region de) arrive with the same SHA-256', async () => {
    const provider = await waitFor(async () => {
      const peers = await consumer!.peers()
      return peers.find((p: any) => p.peerId === exitPeerId && p.agent != null)
    }, { timeoutMs: 60_000, intervalMs: 1000, what: 'the consumer to find and identify the exit' })
    console.log(`netns-nat: consumer to exit before the download: ${JSON.stringify(provider)}`)

    const url = `http://${EXIT_IP}:${target!.port}/blob`
    const t = Date.now()
    const r = await execIn(topo.pub, 'curl', ['-sS', '--max-time', '120', '--proxy', `socks5h://region-de:x@127.0.0.1:${socksPort}`, url], { timeoutMs: 130_000 })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.byteLength).toBe(64 * MiB)
    expect(sha256(r.stdout)).toBe(target!.blobSha256)
    console.log(`netns-nat: 64 MiB over SOCKS5 in ${Date.now() - t} ms`)

    const http = await execIn(topo.pub, 'curl', ['-sS', '--max-time', '120', '--proxy', `http://127.0.0.1:${httpPort}`, '--proxy-user', 'region-de:x', url], { timeoutMs: 130_000 })
    expect(http.stderr).toBe('')
    expect(sha256(http.stdout)).toBe(target!.blobSha256)

    // the exit dialled the target from its own address, in the home namespace
    const seen = await target!.report()
    expect(seen.requests.filter(q => q === 'GET /blob')).toHaveLength(2)
    expect(seen.remotes.every(a => a === EXIT_IP), JSON.stringify(seen.remotes)).toBe(true)
    const s = await exit!.status()
    expect(s.exit.bytesOut).toBeGreaterThanOrEqual(2 * 64 * MiB)
  }, 300_000)

  it('consumer and exit: relayed, or direct only as the NAT allows (opened by the exit, from the router\'s address)', async () => {
    const peers = await consumer!.peers()
    const atConsumer = peers.find((p: any) => p.peerId === exitPeerId)
    expect(atConsumer, JSON.stringify(peers)).toBeDefined()
    const direct = atConsumer.addresses.filter((a: string) => !a.includes('/p2p-circuit'))
    const relayed = atConsumer.addresses.filter((a: string) => a.includes('/p2p-circuit'))
    console.log(`netns-nat: ${direct.length > 0 ? 'a direct connection too (the exit dialled out through the NAT: DCUtR or another dial)' : 'relayed only: DCUtR did not upgrade'}; consumer's connections to the exit: ${JSON.stringify(atConsumer)}`)
    // the circuit runs through our relay
    expect(relayed.every((a: string) => a.startsWith(relayAddr)), JSON.stringify(relayed)).toBe(true)
    // a direct connection can only come in through the NAT
    expect(direct.every((a: string) => a.startsWith(`/ip4/${ROUTER_PUBLIC_IP}/tcp/`)), JSON.stringify(direct)).toBe(true)
    if (direct.length === 0) expect(atConsumer.limited).toBe(true)
  }, 120_000)
})
