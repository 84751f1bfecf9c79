/**
 * A real node ends a connection or stream at a length prefix longer than
 * any frame needs, at each layer that starts with multistream-select: the
 * raw TCP connection (no handshake needed), the encrypted connection's
 * negotiation of the muxer, a stream's negotiation, and the frames of a
 * length-prefixed libp2p protocol (the DHT's). libp2p's readers take such a
 * prefix one byte at a time and keep every byte: 40 connections of 0xff for
 * 10 s held a node's event loop for 80 s and its RSS near 900 MB. Each case
 * here asserts the node's own 'framing' refusal (only the guard makes one)
 * and that the peer was cut off; then that the node still serves honest
 * peers, whose connections and streams the watch followed as well.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { lpStream } from '@libp2p/utils'
import { DHT_PROTOCOL } from '../../src/constants.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { waitFor } from '../utils/cli.ts'
import { HEADER, flood, line, nodeWithFramingRefusals } from '../utils/framing.ts'
import type { PeerRefusalNotice } from '../../src/node/refusal-notices.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { ConnectionEncrypter, Libp2p, Stream } from '@libp2p/interface'

describe('a node\'s frame guards', () => {
  let node: SparebandNode
  let refusals: PeerRefusalNotice[] = []
  const attackers: Libp2p[] = []
  let port: number

  beforeAll(async () => {
    ;({ node, refusals } = await nodeWithFramingRefusals('sb-frame-guard-'))
    port = Number(/\/tcp\/(\d+)/.exec(node.status().addresses[0])![1])
  })

  afterAll(async () => {
    for (const a of attackers) await a.stop()
    await node?.stop()
  })

  /** The next framing refusal the node reports. */
  async function nextRefusal (before: number): Promise<PeerRefusalNotice> {
    return waitFor(() => refusals.length > before ? refusals[before] : undefined, { timeoutMs: 10_000, what: 'a framing refusal' }) as Promise<PeerRefusalNotice>
  }

  it('ends a raw TCP connection that floods its negotiation of the encrypter, with no handshake', async () => {
    const before = refusals.length
    const socket = connect(port, '127.0.0.1')
    socket.on('error', () => {})
    let sent = 0
    const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
    socket.once('connect', () => {
      socket.write(HEADER)
      // as much as the node will take, until it closes the connection
      const pump = (): void => {
        while (!socket.destroyed && sent < 64 * 2 ** 20) {
          sent += 65536
          if (!socket.write(flood(65536))) { socket.once('drain', pump); return }
        }
      }
      pump()
    })
    const refusal = await nextRefusal(before)
    expect(refusal).toMatchObject({ peer: expect.stringMatching(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+$/), about: 'connection', reason: 'a length prefix longer than 2 bytes in protocol negotiation' })
    await closed
    // cut off long before the 64 MiB a peer could push into a reader that took them a byte at a time
    expect(sent).toBeLessThan(64 * 2 ** 20)
  })

  it('ends an encrypted connection that floods its negotiation of the muxer (no muxer agreed in the handshake)', async () => {
    const before = refusals.length
    // noise as usual, but asking for no muxer in the handshake, then junk where the negotiation goes
    const flooding = (components: any): ConnectionEncrypter => {
      const inner = noise()(components)
      return Object.assign(Object.create(inner), {
        secureOutbound: async (c: any, o: any) => {
          const result = await inner.secureOutbound(c, { ...o, skipStreamMuxerNegotiation: true })
          result.connection.send(HEADER)
          result.connection.send(flood(1024))
          return result
        }
      })
    }
    const attacker = await createLibp2p({ addresses: { listen: [] }, transports: [tcp()], connectionEncrypters: [flooding], streamMuxers: [yamux()] })
    attackers.push(attacker)
    await expect(attacker.dial(multiaddr(node.status().addresses[0]))).rejects.toThrow()
    expect(await nextRefusal(before)).toMatchObject({ about: 'connection', reason: 'a length prefix longer than 2 bytes in protocol negotiation', peer: expect.stringMatching(/^\/ip4\/127\.0\.0\.1\/tcp\//) })
  })

  it('ends a connection it dialled whose peer answers its negotiation with a flood', async () => {
    const before = refusals.length
    const server = createServer(socket => {
      socket.on('error', () => {})
      socket.write(HEADER)
      socket.write(flood(65536))
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const address = `/ip4/127.0.0.1/tcp/${(server.address() as AddressInfo).port}`
      await expect(node.libp2p.dial(multiaddr(address))).rejects.toThrow()
      expect(await nextRefusal(before)).toMatchObject({ peer: address, about: 'connection', reason: 'a length prefix longer than 2 bytes in protocol negotiation' })
    } finally {
      server.close()
    }
  })

  /** A stream on a real connection to the node, reset by it: resolves with its status once closed. */
  async function floodStream (stream: Stream, first: Uint8Array[]): Promise<string> {
    for (const b of first) stream.send(b)
    const closed = new Promise<void>(resolve => stream.addEventListener('close', () => resolve(), { once: true }))
    for (let i = 0; i < 64 && stream.status === 'open'; i++) {
      if (!stream.send(flood(4096))) await Promise.race([new Promise(resolve => stream.addEventListener('drain', resolve, { once: true })), closed])
    }
    await closed
    return stream.status
  }

  it('resets a stream that floods its protocol negotiation, and one that floods the DHT protocol\'s frames', async () => {
    const attacker = await loopbackNode()
    attackers.push(attacker)
    const conn = await attacker.dial(multiaddr(node.status().addresses[0]))
    let before = refusals.length
    // a raw muxed stream: the bytes go out as they are, with no negotiation of ours
    const raw = await (conn as any).muxer.createStream({}) as Stream
    expect(await floodStream(raw, [HEADER])).toBe('reset')
    // named by the connection's address: the peer id is not the guard's to know
    expect(await nextRefusal(before)).toMatchObject({ about: 'stream', reason: 'a length prefix longer than 2 bytes in protocol negotiation', peer: expect.stringMatching(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+$/) })

    before = refusals.length
    const dht = await conn.newStream(DHT_PROTOCOL)
    expect(await floodStream(dht, [])).toBe('reset')
    expect(await nextRefusal(before)).toMatchObject({ about: `stream ${DHT_PROTOCOL}`, reason: `a length prefix longer than 5 bytes on ${DHT_PROTOCOL}` })
    // a first line that is not the header: libp2p's handle() answers "na" and reads on, and so does the watch
    before = refusals.length
    const headless = await (conn as any).muxer.createStream({}) as Stream
    expect(await floodStream(headless, [line('/not-a-header')])).toBe('reset')
    expect(await nextRefusal(before)).toMatchObject({ about: 'stream', reason: 'a length prefix longer than 2 bytes in protocol negotiation' })

    // WebRTC's signalling runs on a yamux stream over TCP too, read message by message
    before = refusals.length
    const signalling = await conn.newStream('/webrtc-signaling/0.0.1')
    expect(await floodStream(signalling, [])).toBe('reset')
    expect(await nextRefusal(before)).toMatchObject({ about: 'stream /webrtc-signaling/0.0.1' })
    // the connection itself stays: one bad stream is the stream's end
    expect(conn.status).toBe('open')
  })

  it('ends a relayed connection that floods its negotiation: any peer may open a circuit relay stop stream to the node', async () => {
    const attacker = await loopbackNode()
    attackers.push(attacker)
    const conn = await attacker.dial(multiaddr(node.status().addresses[0]))
    const before = refusals.length
    // StopMessage { type: CONNECT, peer: { id } } for a peer of our own making; the node answers STATUS OK
    const id = (await loopbackNode()).peerId.toMultihash().bytes
    const peer = Uint8Array.from([0x0a, id.byteLength, ...id])
    const lp = lpStream(await conn.newStream('/libp2p/circuit/relay/0.2.0/stop'))
    await lp.write(Uint8Array.from([0x08, 0x00, 0x12, peer.byteLength, ...peer]))
    expect(Buffer.from((await lp.read()).subarray()).toString('hex')).toBe('08012064')
    // the relayed connection's own bytes: its negotiation of the encrypter, flooded
    expect(await floodStream(lp.unwrap(), [HEADER])).toBe('reset')
    expect(await nextRefusal(before)).toMatchObject({ about: 'connection', reason: 'a length prefix longer than 2 bytes in protocol negotiation' })
  })

  it('ends a stream it opened whose peer answers a proposal with something else, then floods', async () => {
    // a peer that answers the node's first proposal with a protocol the node did not propose: libp2p's select()
    // then proposes the next and reads on, and so does the watch
    let hijacked = 0
    const hijacking = (): any => {
      const inner = yamux()()
      return Object.assign(Object.create(inner), {
        createStreamMuxer: (maConn: any) => {
          const muxer = inner.createStreamMuxer(maConn)
          const onRemoteStream = muxer.onRemoteStream.bind(muxer)
          muxer.onRemoteStream = (stream: any) => {
            const send = stream.send.bind(stream)
            stream.send = (data: any) => {
              if (Buffer.from(data.subarray()).toString('latin1').includes('/meshsub/1.2.0') && hijacked++ === 0) {
                send(line('/something/else'))
                setTimeout(() => { void floodStream(stream, []).catch(() => {}) }, 50)
                return true
              }
              return send(data)
            }
            onRemoteStream(stream)
          }
          return muxer
        }
      })
    }
    const attacker = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [hijacking] })
    attackers.push(attacker)
    for (const p of ['/meshsub/1.2.0', '/meshsub/1.1.0', '/meshsub/1.0.0']) await attacker.handle(p, () => {})
    const before = refusals.length
    // select() with three proposals, as gossipsub makes
    await expect(node.libp2p.dialProtocol(attacker.getMultiaddrs()[0], ['/meshsub/1.2.0', '/meshsub/1.1.0', '/meshsub/1.0.0'])).rejects.toThrow()
    expect(hijacked).toBe(1)
    expect(await nextRefusal(before)).toMatchObject({ about: 'stream', reason: 'a length prefix longer than 2 bytes in protocol negotiation' })
  })

  it('still serves honest peers: identify and the DHT answer, through watched connections and streams', async () => {
    const before = refusals.length
    const honest = await createLibp2p({ addresses: { listen: [] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()], services: { identify: identify() } })
    attackers.push(honest)
    const conn = await honest.dial(multiaddr(node.status().addresses[0]))
    // identify runs on its own on a new connection: the node's answer lands in the peer store
    const protocols = await waitFor(async () => {
      const p = (await honest.peerStore.get(node.peerId).catch(() => undefined))?.protocols ?? []
      return p.includes(DHT_PROTOCOL) ? p : undefined
    }, { timeoutMs: 10_000, what: 'the node\'s identify answer' })
    expect(protocols).toContain('/ipfs/id/1.0.0')
    // a DHT FIND_NODE (type 4) for our own key: the node answers with a length-prefixed message
    const stream = await conn.newStream(DHT_PROTOCOL)
    const lp = lpStream(stream)
    const key = honest.peerId.toMultihash().bytes
    await lp.write(Uint8Array.from([0x08, 0x04, 0x12, key.byteLength, ...key]))
    const answer = await lp.read()
    expect(answer.byteLength).toBeGreaterThan(0)
    expect(answer.subarray()[0]).toBe(0x08)
    expect(refusals.length).toBe(before)
  })
})
