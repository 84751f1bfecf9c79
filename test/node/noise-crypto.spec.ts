import { describe, it, expect } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise, pureJsCrypto } from '@chainsafe/libp2p-noise'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { yamux } from '@libp2p/yamux'
import { Uint8ArrayList } from 'uint8arraylist'
import { noiseCrypto } from '../../src/node/noise-crypto.ts'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'

type NoiseBytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0]
const flat = (x: NoiseBytes): Buffer => Buffer.from(x instanceof Uint8Array ? x : x.subarray())
/** The same bytes as a list of uneven parts, as noise hands over a message that spans buffers. */
const asList = (b: Uint8Array): NoiseBytes => {
  const list = new Uint8ArrayList()
  for (let i = 0, step = 1; i < b.byteLength; i += step, step = step * 3 + 7) list.append(b.subarray(i, Math.min(b.byteLength, i + step)))
  // uint8arraylist 3 standing in for noise's 2: see src/node/noise-crypto.ts
  return list as unknown as NoiseBytes
}

describe('noise crypto provider', () => {
  const others: Array<[string, ICryptoInterface]> = [['noise default', defaultCrypto], ['pure JS', pureJsCrypto]]
  // both sides of the 1200-byte cut-off, up to a full noise message
  const sizes = [0, 1, 12, 1199, 1200, 4096, 65519]

  for (const [name, other] of others) {
    for (const size of sizes) {
      it(`round-trips ${size} bytes with ${name}, both ways, from arrays and lists`, () => {
        const k = randomBytes(32)
        const nonce = randomBytes(12)
        const ad = randomBytes(32)
        const plaintext = randomBytes(size)
        for (const input of [plaintext, asList(plaintext)]) {
          const ours = flat(noiseCrypto.chaCha20Poly1305Encrypt(input, nonce, ad, k))
          const theirs = flat(other.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k))
          // the same cipher: byte-identical output, tag included
          expect(ours.toString('hex')).toBe(theirs.toString('hex'))
          expect(flat(other.chaCha20Poly1305Decrypt(ours, nonce, ad, k)).equals(plaintext)).toBe(true)
          for (const c of [theirs, asList(theirs)]) {
            expect(flat(noiseCrypto.chaCha20Poly1305Decrypt(c, nonce, ad, k, new Uint8Array(size))).equals(plaintext)).toBe(true)
          }
        }
      })
    }
  }

  it('refuses a message with a flipped bit, a wrong key, a wrong nonce or wrong associated data', () => {
    const k = randomBytes(32)
    const nonce = randomBytes(12)
    const ad = randomBytes(32)
    const sealed = flat(noiseCrypto.chaCha20Poly1305Encrypt(randomBytes(8192), nonce, ad, k))
    for (const at of [0, 4000, sealed.byteLength - 1]) {
      const bad = Buffer.from(sealed)
      bad[at] ^= 0x01
      expect(() => noiseCrypto.chaCha20Poly1305Decrypt(bad, nonce, ad, k)).toThrow()
    }
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, randomBytes(32))).toThrow()
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, randomBytes(12), ad, k)).toThrow()
    expect(() => noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, randomBytes(32), k)).toThrow()
    expect(flat(noiseCrypto.chaCha20Poly1305Decrypt(sealed, nonce, ad, k)).byteLength).toBe(8192)
  })

  it('uses the key bytes as they are now, even when the same array was changed in place', () => {
    const k = randomBytes(32)
    const nonce = randomBytes(12)
    const plaintext = randomBytes(4096)
    const first = flat(noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, new Uint8Array(0), k))
    k[0] ^= 0xff
    const second = flat(noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, new Uint8Array(0), k))
    expect(second.equals(first)).toBe(false)
    expect(second.toString('hex')).toBe(flat(defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, new Uint8Array(0), k)).toString('hex'))
  })

  it('talks to a stock noise peer over real TCP: 8 MiB each way arrive with the same SHA-256', async () => {
    const base = { addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], streamMuxers: [yamux()] }
    const ours = await createLibp2p({ ...base, connectionEncrypters: [noise({ crypto: noiseCrypto })] })
    const stock = await createLibp2p({ ...base, connectionEncrypters: [noise()] })
    try {
      const PROTOCOL = '/spareband-test/echo/1.0.0'
      await stock.handle(PROTOCOL, stream => {
        stream.addEventListener('message', evt => { stream.send(evt.data) })
        stream.addEventListener('remoteCloseWrite', () => { void stream.close() })
      })
      const data = randomBytes(8 * 1024 * 1024)
      const stream = await ours.dialProtocol(stock.getMultiaddrs()[0], PROTOCOL)
      const got = createHash('sha256')
      let n = 0
      const done = new Promise<void>((resolve, reject) => {
        stream.addEventListener('message', evt => {
          for (const b of evt.data instanceof Uint8Array ? [evt.data] : evt.data) { got.update(b); n += b.byteLength }
        })
        stream.addEventListener('close', evt => { evt.error != null ? reject(evt.error) : resolve() })
      })
      for (let i = 0; i < data.byteLength; i += 100_000) {
        if (!stream.send(data.subarray(i, i + 100_000))) await stream.onDrain()
      }
      await stream.close()
      await done
      expect(n).toBe(data.byteLength)
      expect(got.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'))
    } finally {
      await ours.stop()
      await stock.stop()
    }
  })
})
