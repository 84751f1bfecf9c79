/**
 * The noise crypto provider a node runs: noise's own default, except that
 * ChaCha20-Poly1305 on large messages gets its key as a cached Node
 * `KeyObject` instead of raw bytes.
 *
 * Why: noise's default hands `createCipheriv` the raw 32-byte key for every
 * message. Node 24 then runs its key-type checks (`isKeyObject`,
 * `isCryptoKey`), which are slow for a plain Uint8Array: about 20 µs per
 * message, a third of the cost of encrypting 64 KiB and 8-10 % of a busy
 * node's CPU on bulk data (profiles of the tunnel bench). With a KeyObject
 * the check is a cached field read.
 *
 * Also, an encrypted message is returned as a list of the cipher's output
 * and its tag rather than concatenated into a fresh 64 KiB buffer.
 *
 * Small messages (yamux headers and window updates) stay with noise's
 * default, the WebAssembly implementation, which is faster below ~1 KiB.
 */

import { createCipheriv, createDecipheriv, createSecretKey } from 'node:crypto'
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { equals as uint8ArrayEquals } from 'uint8arrays/equals'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'
import type { KeyObject } from 'node:crypto'

const CHACHA_POLY1305 = 'chacha20-poly1305'
const TAG_LENGTH = 16
/** Below this many bytes noise's default (WebAssembly) is faster; the same cut-off noise uses. */
const NODE_CRYPTO_MIN_BYTES = 1200

/** A message as noise hands it over: an array, or a list of arrays. */
type NoiseBytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0]

/**
 * noise ships uint8arraylist 2 and we have 3. The two classes differ in their
 * types only: both brand a list with the same `Symbol.for` key, and noise
 * reads a list by iterating it, so ours passes for its own.
 */
const toNoise = (bytes: Uint8Array | Uint8ArrayList): NoiseBytes => bytes as unknown as NoiseBytes

interface CachedKey { bytes: Uint8Array, key: KeyObject }

/**
 * Noise keeps one key array per direction of a connection for its whole
 * life, so the KeyObject is cached on that array. The bytes are compared on
 * every use (32 bytes, cheap next to a message) so a key array changed in
 * place can never be used with a stale KeyObject.
 */
const keys = new WeakMap<Uint8Array, CachedKey>()

function keyObject (k: Uint8Array): KeyObject {
  const cached = keys.get(k)
  if (cached != null && uint8ArrayEquals(cached.bytes, k)) return cached.key
  const entry = { bytes: Uint8Array.from(k), key: createSecretKey(k) }
  keys.set(k, entry)
  return entry.key
}

function encrypt (plaintext: NoiseBytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array): NoiseBytes {
  if (plaintext.byteLength < NODE_CRYPTO_MIN_BYTES) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
  const cipher = createCipheriv(CHACHA_POLY1305, keyObject(k), nonce, { authTagLength: TAG_LENGTH })
  cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
  const output = new Uint8ArrayList()
  if (plaintext instanceof Uint8Array) output.append(cipher.update(plaintext))
  else for (const buf of plaintext) output.append(cipher.update(buf))
  // a stream cipher: final() has nothing left, but it computes the tag
  const final = cipher.final()
  if (final.byteLength > 0) output.append(final)
  output.append(cipher.getAuthTag())
  return toNoise(output)
}

function decrypt (ciphertext: NoiseBytes, nonce: Uint8Array, ad: Uint8Array, k: Uint8Array, dst?: Uint8Array): NoiseBytes {
  if (ciphertext.byteLength < NODE_CRYPTO_MIN_BYTES) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst)
  const textLength = ciphertext.byteLength - TAG_LENGTH
  const decipher = createDecipheriv(CHACHA_POLY1305, keyObject(k), nonce, { authTagLength: TAG_LENGTH })
  decipher.setAAD(ad, { plaintextLength: textLength })
  decipher.setAuthTag(ciphertext.subarray(textLength))
  const text = ciphertext instanceof Uint8Array ? ciphertext.subarray(0, textLength) : ciphertext.sublist(0, textLength)
  if (text instanceof Uint8Array) {
    const output = decipher.update(text)
    // final() checks the tag and throws on a forged or corrupted message
    const final = decipher.final()
    return final.byteLength > 0 ? toNoise(new Uint8ArrayList(output, final)) : output
  }
  const output = new Uint8ArrayList()
  for (const buf of text) output.append(decipher.update(buf))
  const final = decipher.final()
  if (final.byteLength > 0) output.append(final)
  return toNoise(output)
}

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  chaCha20Poly1305Encrypt: encrypt,
  chaCha20Poly1305Decrypt: decrypt
}
