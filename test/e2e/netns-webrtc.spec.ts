import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { waitFor } from '../utils/cli.ts'
import { ISOLATED_IP, IsolatedNamespace, NetnsNode, NetnsTarget, execIn, netnsUnusable } from '../utils/netns.ts'

const unusable = netnsUnusable()
if (unusable != null) console.warn(`netns-webrtc e2e: SKIPPED, ${unusable} (it needs root and ip netns)`)

const FLOODER = resolve(import.meta.dirname, '../utils/webrtc-flooder.ts')
const STREAMS = 4
const FLOOD_SECONDS = 8

const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024

/**
 * WebRTC's data channels are streams like yamux's, and multistream-select
 * reads each one's first lines with the same byte-at-a-time length prefix
 * (frame-guard.ts). Four channels of "more follows" bytes took a node past
 * 2 GB and held its event loop for half a minute before the guard.
 *
 * WebRTC gathers a candidate on every interface and, by default, asks
 * public STUN servers, so the node and the hostile peer both run in a
 * namespace of their own, linked to nothing (IsolatedNamespace): nothing
 * they send can go anywhere else. The node runs with the local network's defaults, which
 * ask no STUN server (network.stun_servers "auto"), as the flooder asks none.
 */
describe.skipIf(unusable != null)('a peer that floods WebRTC data channels (a namespace linked to nothing; skipped unless root with ip netns)', () => {
  const ns = new IsolatedNamespace()
  let victim: NetnsNode | undefined
  let webrtcAddr = ''
  let tcpAddr = ''

  beforeAll(async () => {
    await ns.build()
    victim = await NetnsNode.start(ns.name, { region: 'de', args: ['--no-supply', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/udp/0/webrtc-direct'] })
    const status = await victim.status()
    webrtcAddr = status.addresses.find((a: string) => a.includes('/webrtc-direct/'))
    expect(webrtcAddr, JSON.stringify(status.addresses)).toMatch(/^\/ip4\/127\.0\.0\.1\/udp\/\d+\/webrtc-direct\/certhash\/[\w-]+\/p2p\/12D3Koo\w+$/)
    tcpAddr = status.addresses.find((a: string) => a.includes('/tcp/'))
    expect(tcpAddr, JSON.stringify(status.addresses)).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3Koo\w+$/)
  }, 90_000)

  const ended = (): string[] => victim!.proc.output.split('\n').filter(l => / warn +ended a peer's connection or stream /.test(l))

  afterAll(async () => {
    await victim?.proc.stop().catch(() => {})
    await ns.teardown()
  }, 30_000)

  // webrtc-direct: anyone who reaches the UDP port; WebRTC: any connected peer, through the signalling protocol
  for (const [transport, addressOf] of [['webrtc-direct', () => webrtcAddr], ['WebRTC set up through a TCP connection\'s signalling', () => tcpAddr]] as const) {
    it(`ends every flooded channel at once, stays small, says so in its log and answers on (${transport})`, async () => {
      const pid = victim!.proc.child.pid!
      const rssBefore = rssMiB(pid)
      const linesBefore = ended().length
      const r = await execIn(ns.name, process.execPath, [FLOODER, addressOf(), String(STREAMS), String(FLOOD_SECONDS)], { timeoutMs: 60_000 })
      expect(r.code, r.stderr).toBe(0)
      const report = JSON.parse(r.stdout.toString()) as { peerId: string, streams: Array<{ sent: number, endedAfterMs: number | null }> }
      expect(report.streams).toHaveLength(STREAMS)
      for (const s of report.streams) {
        // the node ends the channel at the second such byte; without the guard
        // it takes all it is sent and the channel stays open for the whole flood
        expect(s.endedAfterMs, JSON.stringify(report.streams)).not.toBeNull()
        expect(s.endedAfterMs!).toBeLessThan(FLOOD_SECONDS * 1000 / 2)
        expect(s.sent).toBeLessThan(16 * 1024 * 1024)
      }
      // before the guard the same flood grew the node by hundreds of MB a second
      expect(rssMiB(pid) - rssBefore).toBeLessThan(64)
      await waitFor(() => ended().length > linesBefore, { timeoutMs: 10_000, what: 'the line in the node\'s log' })
      const line = ended()[linesBefore]
      expect(line).toContain(`/p2p/${report.peerId}`)
      expect(line).toContain('ended=stream')
      expect(line).toContain('length prefix longer than 2 bytes in protocol negotiation')
      // and it still answers its operator
      const status = await victim!.status()
      expect(status.peerId).toBe(webrtcAddr.split('/p2p/')[1])
    }, 90_000)
  }
})

/**
 * The guard must leave honest WebRTC alone: a consumer whose only way to
 * its exit is webrtc-direct (the exit listens on nothing else) carries a
 * download through it whole.
 */
describe.skipIf(unusable != null)('a tunnel to an exit reached only over webrtc-direct (a namespace linked to nothing; skipped unless root with ip netns)', () => {
  const ns = new IsolatedNamespace()
  const BLOB = 8 * 1024 * 1024
  let target: NetnsTarget | undefined
  let exit: NetnsNode | undefined
  let consumer: NetnsNode | undefined
  let exitPeerId = ''

  beforeAll(async () => {
    await ns.build()
    target = new NetnsTarget(ns.name, ISOLATED_IP, BLOB)
    await target.ready()
    exit = await NetnsNode.start(ns.name, { region: 'de', args: ['--listen', `/ip4/${ISOLATED_IP}/udp/0/webrtc-direct`, '--allow-private-targets', '--exit-ports', String(target.port)] })
    const exitStatus = await exit.status()
    exitPeerId = exitStatus.peerId
    expect(exitStatus.addresses.every((a: string) => a.includes('/webrtc-direct/')), JSON.stringify(exitStatus.addresses)).toBe(true)
    consumer = await NetnsNode.start(ns.name, { region: 'jp', args: ['--no-supply', '--listen', '/ip4/127.0.0.1/tcp/0', '--bootstrap', exitStatus.addresses[0]] })
  }, 120_000)

  afterAll(async () => {
    await Promise.all([consumer, exit].map(async n => n?.proc.kill()))
    await target?.close()
    await ns.teardown()
  }, 30_000)

  it('carries a download with the same SHA-256, over a webrtc-direct connection, and the exit ends nothing', async () => {
    const atConsumer = await waitFor(async () => (await consumer!.peers()).find((p: any) => p.peerId === exitPeerId && p.agent != null), { timeoutMs: 60_000, intervalMs: 500, what: 'the consumer to identify the exit' })
    expect(atConsumer.addresses.every((a: string) => a.includes('/webrtc-direct/')), JSON.stringify(atConsumer)).toBe(true)
    const { socksPort } = (await consumer!.status()).proxy
    const r = await execIn(ns.name, 'curl', ['-sS', '--max-time', '60', '--proxy', `socks5h://region-de:x@127.0.0.1:${socksPort}`, `http://${ISOLATED_IP}:${target!.port}/blob`], { timeoutMs: 70_000 })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.byteLength).toBe(BLOB)
    expect(createHash('sha256').update(r.stdout).digest('hex')).toBe(target!.blobSha256)
    for (const node of [exit!, consumer!]) expect(node.proc.output).not.toMatch(/ended a peer's connection or stream/)
  }, 120_000)
})
