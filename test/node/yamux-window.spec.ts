import { describe, it, expect, afterEach } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { batchedYamux, batchWindowUpdates } from '../../src/node/yamux-window.ts'
import { noiseCrypto } from '../../src/node/noise-crypto.ts'
import { YAMUX_MAX_WINDOW } from '../../src/node/libp2p.ts'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'

const SINK = '/spareband-test/sink/1.0.0'
const MiB = 1024 * 1024
const streamOptions = { maxStreamWindowSize: YAMUX_MAX_WINDOW }

/** A noise crypto provider that counts the messages this node encrypts below 1 KiB: yamux window updates, on a one-way bulk stream. */
function countingCrypto (): { crypto: ICryptoInterface, small: () => number } {
  let small = 0
  return {
    crypto: {
      ...noiseCrypto,
      chaCha20Poly1305Encrypt: (plaintext, nonce, ad, k) => {
        if (plaintext.byteLength < 1024) small++
        return noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
      }
    },
    small: () => small
  }
}

async function node (muxer: 'batched' | 'stock', crypto: ICryptoInterface = noiseCrypto): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto })],
    streamMuxers: [muxer === 'batched' ? batchedYamux({ streamOptions }) : yamux({ streamOptions })]
  })
}

/** The receiver hashes what arrives; `onFirstData` may pause it for a while. */
/** Resolves once the handler is registered, with (boxed: await would flatten it) the promise of what arrived. */
async function sink (receiver: Libp2p, onFirstData?: (stream: Stream) => Promise<void>): Promise<{ arrived: Promise<{ bytes: number, sha256: string }> }> {
  let settle!: (r: { bytes: number, sha256: string }) => void
  let fail!: (err: Error) => void
  const result = new Promise<{ bytes: number, sha256: string }>((resolve, reject) => { settle = resolve; fail = reject })
  await receiver.handle(SINK, stream => {
    const hash = createHash('sha256')
    let bytes = 0
    stream.addEventListener('message', evt => {
      for (const b of evt.data instanceof Uint8Array ? [evt.data] : evt.data) { hash.update(b); bytes += b.byteLength }
      if (onFirstData != null) {
        const f = onFirstData
        onFirstData = undefined
        f(stream).catch(fail)
      }
    })
    // 'end': after the last byte, even one held in a paused reader's buffer
    stream.addEventListener('end', () => {
      settle({ bytes, sha256: hash.digest('hex') })
      void stream.close().catch(() => {})
    })
  })
  return { arrived: result }
}

/** 64 KiB at a time with a turn of the event loop in between, as a tunnel fed by a socket sends: one yamux frame each. */
async function send (sender: Libp2p, receiver: Libp2p, data: Uint8Array): Promise<void> {
  const stream = await sender.dialProtocol(receiver.getMultiaddrs()[0], SINK)
  for (let i = 0; i < data.byteLength; i += 64 * 1024) {
    if (!stream.send(data.subarray(i, i + 64 * 1024))) await stream.onDrain()
    await new Promise(resolve => setImmediate(resolve))
  }
  await stream.close()
}

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex')

describe('yamux with window updates at half the window', () => {
  const nodes: Libp2p[] = []
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map(async n => n.stop()))
  })

  /** Window updates the receiver sends while 16 MiB arrive, and whether the bytes arrived intact. */
  async function windowUpdatesFor (muxer: 'batched' | 'stock'): Promise<number> {
    const counted = countingCrypto()
    const receiver = await node(muxer, counted.crypto)
    const sender = await node(muxer)
    nodes.push(receiver, sender)
    const data = randomBytes(16 * MiB)
    const { arrived } = await sink(receiver)
    // the connection's own set-up (identify, multistream) is small messages too: count from here
    await sender.dial(receiver.getMultiaddrs()[0])
    await sleep(200)
    const before = counted.small()
    await send(sender, receiver, data)
    const got = await arrived
    expect(got.bytes).toBe(data.byteLength)
    expect(got.sha256).toBe(sha256(data))
    return counted.small() - before
  }

  it('sends far fewer window updates than stock yamux for the same 16 MiB, which arrive intact', async () => {
    const stock = await windowUpdatesFor('stock')
    const batched = await windowUpdatesFor('batched')
    // stock: one per 64 KiB frame received; batched: one per half window (128 KiB growing to 1 MiB)
    expect(stock).toBeGreaterThanOrEqual(200)
    expect(batched).toBeLessThan(stock / 3)
  })

  it('a reader that pauses mid-transfer resumes and gets every byte: the held-back update is not lost', async () => {
    const receiver = await node('batched')
    const sender = await node('batched')
    nodes.push(receiver, sender)
    const data = randomBytes(8 * MiB)
    let paused = false
    const { arrived } = await sink(receiver, async stream => {
      stream.pause()
      paused = true
      await sleep(300)
      stream.resume()
    })
    await send(sender, receiver, data)
    const got = await arrived
    expect(paused).toBe(true)
    expect(got.bytes).toBe(data.byteLength)
    expect(got.sha256).toBe(sha256(data))
  })

  it('talks to stock yamux both ways: 8 MiB each way arrive intact', async () => {
    const ours = await node('batched')
    const stock = await node('stock')
    nodes.push(ours, stock)
    for (const [from, to] of [[ours, stock], [stock, ours]]) {
      const data = randomBytes(8 * MiB)
      const { arrived } = await sink(to)
      await send(from, to, data)
      const got = await arrived
      expect(got.sha256).toBe(sha256(data))
      await to.unhandle(SINK)
    }
  })

  it('leaves anything that is not the yamux stream it knows alone', () => {
    expect(batchWindowUpdates({})).toBe(false)
    expect(batchWindowUpdates({ sendWindowUpdate: () => {}, state: 'open' })).toBe(false)
    const stream = { sendWindowUpdate () { this.sent++ }, sent: 0, state: 3, recvWindow: 100, recvWindowCapacity: 100 }
    expect(batchWindowUpdates(stream)).toBe(true)
    // a quarter of the window consumed: held back; past half: sent
    stream.recvWindowCapacity = 75
    stream.sendWindowUpdate()
    expect(stream.sent).toBe(0)
    stream.recvWindowCapacity = 50
    stream.sendWindowUpdate()
    expect(stream.sent).toBe(1)
    // not established (flags to send): always yamux's own
    stream.state = 2
    stream.recvWindowCapacity = 99
    stream.sendWindowUpdate()
    expect(stream.sent).toBe(2)
  })
})
