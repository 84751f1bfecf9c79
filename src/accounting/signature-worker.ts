/**
 * A worker thread that checks receipt signatures for export verification
 * (signature-pool.ts): Ed25519 verification is most of what verifying an
 * export costs, and each check is independent of the others. Kept free of
 * TypeScript-only syntax, so it also runs from source under Node's type
 * stripping (the tests).
 *
 * A batch is one ArrayBuffer of records, each: index (u32), data length
 * (u16), consumer key (32), exit key (32), consumer signature (64), exit
 * signature (64), data. The answer names the first record whose consumer
 * (which 1) or exit (which 2) signature does not verify, or index -1.
 */

import { createPublicKey, verify } from 'node:crypto'
import { parentPort } from 'node:worker_threads'
import type { KeyObject } from 'node:crypto'

/** Keys by their raw bytes, as base64url; an export names few peers. Cleared when full. */
const KEY_CACHE_MAX = 4096
const keys = new Map<string, KeyObject>()

function keyOf (raw: Uint8Array): KeyObject {
  const x = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url')
  let key = keys.get(x)
  if (key == null) {
    key = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x } })
    if (keys.size >= KEY_CACHE_MAX) keys.clear()
    keys.set(x, key)
  }
  return key
}

function verifies (raw: Uint8Array, data: Uint8Array, sig: Uint8Array): boolean {
  try {
    return verify(null, data, keyOf(raw), sig)
  } catch {
    return false
  }
}

parentPort?.on('message', (batch: { id: number, buffer: ArrayBuffer, count: number }) => {
  const bytes = new Uint8Array(batch.buffer)
  const view = new DataView(batch.buffer)
  let at = 0
  let index = -1
  let which = 0
  for (let k = 0; k < batch.count; k++) {
    const entry = view.getUint32(at)
    const length = view.getUint16(at + 4)
    at += 6
    const data = bytes.subarray(at + 192, at + 192 + length)
    if (!verifies(bytes.subarray(at, at + 32), data, bytes.subarray(at + 64, at + 128))) {
      index = entry
      which = 1
      break
    }
    if (!verifies(bytes.subarray(at + 32, at + 64), data, bytes.subarray(at + 128, at + 192))) {
      index = entry
      which = 2
      break
    }
    at += 192 + length
  }
  parentPort?.postMessage({ id: batch.id, index, which })
})
