import { describe, it, expect, afterEach } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { batchedYamux } from '../../src/node/yamux-window.ts'
import { noiseCrypto } from '../../src/node/noise-crypto.ts'
import { pipeSocketStream } from '../../src/relay/pipe.ts'
import type { AddressInfo, Server, Socket } from 'node:net'
import type { Libp2p } from '@libp2p/interface'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'

const PROTOCOL = '/spareband-test/pipe-frames/1.0.0'
const MiB = 1024 * 1024

/** Counts the noise messages this node encrypts, and those under 1 KiB. */
function countingCrypto (): { crypto: ICryptoInterface, counts: { all: number, small: number } } {
  const counts = { all: 0, small: 0 }
  return {
    counts,
    crypto: {
      ...noiseCrypto,
      chaCha20Poly1305Encrypt: (plaintext, nonce, ad, k) => {
        counts.all++
        if (plaintext.byteLength < 1024) counts.small++
        return noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
      }
    }
  }
}

async function node (crypto: ICryptoInterface = noiseCrypto): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto })],
    streamMuxers: [batchedYamux()]
  })
}

describe('the socket -> stream pump writes one noise message per yamux frame', () => {
  const cleanup: Array<() => Promise<void> | void> = []
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c()
  })

  it('a target sending 64 KiB writes: 8 MiB arrive intact, with no small noise message per read', async () => {
    const data = randomBytes(8 * MiB)
    // the "target": writes the data in 64 KiB pieces and ends
    const target: Server = createServer(s => {
      s.on('error', () => {})
      let at = 0
      const pump = (): void => {
        while (at < data.byteLength) {
          const ok = s.write(data.subarray(at, at + 64 * 1024))
          at += 64 * 1024
          if (!ok) { s.once('drain', pump); return }
        }
        s.end()
      }
      pump()
    })
    await new Promise<void>(resolve => target.listen(0, '127.0.0.1', resolve))
    cleanup.push(() => { target.close() })

    const counted = countingCrypto()
    const exit = await node(counted.crypto)
    const consumer = await node()
    cleanup.push(async () => exit.stop(), async () => consumer.stop())
    // the consumer reads what the exit pumps, and hashes it
    const got = createHash('sha256')
    let bytes = 0
    const arrived = new Promise<void>(resolve => {
      void consumer.handle(PROTOCOL, stream => {
        stream.addEventListener('message', evt => {
          for (const b of evt.data instanceof Uint8Array ? [evt.data] : evt.data) { got.update(b); bytes += b.byteLength }
        })
        stream.addEventListener('end', () => { resolve(); void stream.close().catch(() => {}) })
      })
    })
    await exit.dial(consumer.getMultiaddrs()[0])
    await sleep(200)
    const stream = await exit.dialProtocol(consumer.getMultiaddrs()[0], PROTOCOL)
    const before = { ...counted.counts }
    const socket: Socket = connect((target.address() as AddressInfo).port, '127.0.0.1')
    await new Promise(resolve => socket.once('connect', resolve))
    const piped = pipeSocketStream(socket, stream)
    await arrived
    await piped
    const messages = counted.counts.all - before.all
    const small = counted.counts.small - before.small
    expect(bytes).toBe(data.byteLength)
    expect(got.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'))
    // unaligned, each full 64 KiB read became a 65,519-byte message and a 29-byte one (about 90 small ones here);
    // aligned, a small message is only a remainder flushed at the end of a burst
    expect(small).toBeLessThan(40)
    expect(messages).toBeGreaterThanOrEqual(Math.ceil(data.byteLength / 65507))
  })
})
