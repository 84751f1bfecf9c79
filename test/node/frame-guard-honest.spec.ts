/**
 * Honest traffic through a node's frame guards is never cut: the ways
 * libp2p peers negotiate and frame (everything in one chunk, one byte per
 * frame, ls and refused proposals, a raw protocol's bytes right after the
 * proposal, long messages full of 0xff, a muxer negotiated after noise both
 * ways, large gossip, relayed connections through the node), with real
 * peers over TCP on loopback. Each asserts the exchange worked and that the
 * node made no framing refusal. (Written by a reviewer of the guards.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@libp2p/gossipsub'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { multiaddr } from '@multiformats/multiaddr'
import { encode } from 'uint8-varint'
import { lpStream } from '@libp2p/utils'
import { DHT_PROTOCOL } from '../../src/constants.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { waitFor } from '../utils/cli.ts'
import { HEADER, frame, line, nodeWithFramingRefusals } from '../utils/framing.ts'
import type { PeerRefusalNotice } from '../../src/node/refusal-notices.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { ConnectionEncrypter, Libp2p, Stream } from '@libp2p/interface'

const text = (b: { subarray: () => Uint8Array }): string => Buffer.from(b.subarray()).toString()

describe('a node\'s frame guards and honest peers', () => {
  let node: SparebandNode
  let refusals: PeerRefusalNotice[] = []
  const peers: Libp2p[] = []
  let addr: string

  beforeAll(async () => {
    ;({ node, refusals } = await nodeWithFramingRefusals('sb-frame-honest-', { relay: { enabled: true } }))
    addr = node.status().addresses[0]
  })
  afterAll(async () => {
    for (const p of peers) await p.stop()
    await node?.stop()
  })

  const findNode = (key: Uint8Array): Uint8Array => Uint8Array.from([0x08, 0x04, 0x12, key.byteLength, ...key])

  async function rawStream (): Promise<Stream> {
    const p = await loopbackNode()
    peers.push(p)
    const conn = await p.dial(multiaddr(addr))
    return await (conn as any).muxer.createStream({}) as Stream
  }

  it('header + proposal + a DHT request in one chunk (go-style lazy): answered', async () => {
    const s = await rawStream()
    const key = new Uint8Array(34).fill(7); key[0] = 0x12; key[1] = 0x20
    s.send(Buffer.concat([HEADER, line(DHT_PROTOCOL), frame(findNode(key))]))
    const lp = lpStream(s)
    expect(text(await lp.read())).toBe('/multistream/1.0.0\n')
    expect(text(await lp.read())).toBe(`${DHT_PROTOCOL}\n`)
    expect((await lp.read()).subarray()[0]).toBe(0x08)
    expect(refusals).toEqual([])
  })

  it('the same, one byte per yamux frame: answered', async () => {
    const s = await rawStream()
    const key = new Uint8Array(34).fill(9); key[0] = 0x12; key[1] = 0x20
    const all = Buffer.concat([HEADER, line(DHT_PROTOCOL), frame(findNode(key))])
    const lp = lpStream(s)
    const reading = (async () => [text(await lp.read()), text(await lp.read()), (await lp.read()).subarray()[0]])()
    for (const b of all) { s.send(Uint8Array.of(b)); await new Promise(resolve => setTimeout(resolve, 1)) }
    expect(await reading).toEqual(['/multistream/1.0.0\n', `${DHT_PROTOCOL}\n`, 0x08])
    expect(refusals).toEqual([])
  })

  it('ls, a proposal answered na, then the DHT: answered', async () => {
    const s = await rawStream()
    const key = new Uint8Array(34).fill(5); key[0] = 0x12; key[1] = 0x20
    s.send(Buffer.concat([HEADER, line('ls'), line('/nope/1.0.0'), line('/multistream/1.0.0'), line(DHT_PROTOCOL), frame(findNode(key))]))
    const lp = lpStream(s)
    const answers: string[] = []
    for (let i = 0; i < 5; i++) answers.push(text(await lp.read()))
    expect(answers[0]).toBe('/multistream/1.0.0\n')
    expect(answers[2]).toBe('na\n')
    expect(answers[3]).toBe('/multistream/1.0.0\n')
    expect(answers[4]).toBe(`${DHT_PROTOCOL}\n`)
    expect((await lp.read()).subarray()[0]).toBe(0x08)
    expect(refusals).toEqual([])
  })

  it('ping: header + proposal + 32 bytes of 0xff in one chunk: echoed', async () => {
    const s = await rawStream()
    s.send(Buffer.concat([HEADER, line('/ipfs/ping/1.0.0'), new Uint8Array(32).fill(0xff)]))
    const lp = lpStream(s)
    expect(text(await lp.read())).toBe('/multistream/1.0.0\n')
    expect(text(await lp.read())).toBe('/ipfs/ping/1.0.0\n')
    const bytes = lp.unwrap()
    const got = await new Promise<number>(resolve => { let n = 0; bytes.addEventListener('message', e => { n += e.data.byteLength; if (n >= 32) resolve(n) }) })
    expect(got).toBe(32)
    expect(refusals).toEqual([])
  })

  it('a DHT message with a 3-byte prefix (100 kB) and body full of 0xff: not a framing refusal', async () => {
    const s = await rawStream()
    const big = new Uint8Array(100_000).fill(0xff)
    const put = Buffer.concat([Uint8Array.of(0x08, 0x00), Uint8Array.of(0x12, 0x01, 0x41), Uint8Array.of(0x1a), encode(big.byteLength + 3), Uint8Array.of(0x0a, 0x01, 0x41), big])
    s.send(Buffer.concat([HEADER, line(DHT_PROTOCOL), frame(put)]))
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(refusals).toEqual([])
  })

  it('no muxer agreed in noise: muxer negotiation by multistream-select both ways, then identify and ping', async () => {
    const noEarly = (components: any): ConnectionEncrypter => {
      const inner = noise()(components)
      return Object.assign(Object.create(inner), {
        secureOutbound: async (c: any, o: any) => inner.secureOutbound(c, { ...o, skipStreamMuxerNegotiation: true }),
        secureInbound: async (c: any, o: any) => inner.secureInbound(c, { ...o, skipStreamMuxerNegotiation: true })
      })
    }
    const p = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noEarly], streamMuxers: [yamux()], services: { identify: identify(), ping: ping() } })
    peers.push(p)
    const conn = await p.dial(multiaddr(addr))
    expect(conn.multiplexer).toBe('/yamux/1.0.0')
    await waitFor(async () => ((await p.peerStore.get(node.peerId).catch(() => undefined))?.protocols ?? []).includes(DHT_PROTOCOL) ? true : undefined, { timeoutMs: 10_000, what: 'identify' })
    await conn.close()
    // the node dials the peer: it is the select side of the muxer negotiation
    const p2 = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noEarly], streamMuxers: [yamux()], services: { identify: identify(), ping: ping() } })
    peers.push(p2)
    const back = await node.libp2p.dial(p2.getMultiaddrs()[0])
    expect(back.status).toBe('open')
    await waitFor(async () => ((await node.libp2p.peerStore.get(p2.peerId).catch(() => undefined))?.protocols ?? []).includes('/ipfs/ping/1.0.0') ? true : undefined, { timeoutMs: 10_000, what: 'identify from the node' })
    expect(refusals).toEqual([])
  })

  it('gossipsub with large messages, both ways', async () => {
    const p = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) } })
    peers.push(p)
    const topic = 'spareband/receipts/1'
    ;(p.services.pubsub as any).subscribe(topic)
    await p.dial(multiaddr(addr))
    await waitFor(() => ((node.libp2p.services as any).pubsub.getPeers() as any[]).some(x => x.equals(p.peerId)) ? true : undefined, { timeoutMs: 10_000, what: 'gossip peer' })
    await new Promise(resolve => setTimeout(resolve, 1500))
    for (let i = 0; i < 3; i++) await (p.services.pubsub as any).publish(topic, new Uint8Array(200_000).fill(0xff - i)).catch(() => {})
    await new Promise(resolve => setTimeout(resolve, 1500))
    expect(refusals).toEqual([])
  })

  it('the node as a relay: a reservation (hop), a relayed connection (hop + stop) carrying ping and identify', async () => {
    const mk = async (): Promise<Libp2p> => {
      const n = await createLibp2p({ addresses: { listen: [] }, transports: [tcp(), circuitRelayTransport()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify(), ping: ping() } })
      peers.push(n); return n
    }
    const b = await mk()
    const a = await mk()
    await b.dial(multiaddr(addr))
    // a reservation on the node: the hop protocol both ways
    await (b as any).components.transportManager.listen([multiaddr(`${addr}/p2p-circuit`)])
    await waitFor(() => b.getMultiaddrs().some(m => m.toString().includes('p2p-circuit')) ? true : undefined, { timeoutMs: 15_000, what: 'reservation' })
    const via = multiaddr(`${addr}/p2p-circuit/p2p/${b.peerId}`)
    const conn = await a.dial(via)
    expect(conn.limits).toBeDefined()
    const rtt = await (a.services.ping as any).ping(via, { runOnLimitedConnection: true })
    expect(rtt).toBeGreaterThanOrEqual(0)
    expect(refusals).toEqual([])
  })
})
