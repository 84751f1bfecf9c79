/**
 * Deterministic bench payload: a 16 MiB block of AES-CTR keystream, the same
 * in every process (so a child can source or check data without it being
 * shipped over IPC), streamed as often as needed in 64 KiB slices. Any
 * reordering, loss or duplication inside a block changes the SHA-256.
 */

import { createCipheriv, createHash } from 'node:crypto'

export const KiB = 1024
export const MiB = 1024 * KiB
export const BLOCK_BYTES = 16 * MiB
export const CHUNK_BYTES = 64 * KiB

let block: Buffer | undefined

export function dataBlock (): Buffer {
  if (block == null) {
    const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16, 0))
    block = Buffer.concat([cipher.update(Buffer.alloc(BLOCK_BYTES)), cipher.final()])
  }
  return block
}

/** The slices that make up `total` bytes of payload, in order. */
export function * chunks (total: number, size = CHUNK_BYTES): Generator<Buffer> {
  const b = dataBlock()
  let sent = 0
  while (sent < total) {
    const off = sent % BLOCK_BYTES
    const n = Math.min(size, total - sent, BLOCK_BYTES - off)
    yield b.subarray(off, off + n)
    sent += n
  }
}

const expected = new Map<number, string>()

/** SHA-256 (hex) of the first `total` payload bytes; cached. */
export function expectedSha256 (total: number): string {
  let h = expected.get(total)
  if (h == null) {
    const hash = createHash('sha256')
    for (const c of chunks(total, BLOCK_BYTES)) hash.update(c)
    h = hash.digest('hex')
    expected.set(total, h)
  }
  return h
}

/** Counts and hashes what arrives. */
export class Receiver {
  bytes = 0
  private readonly hash = createHash('sha256')
  update (data: Uint8Array): void {
    this.bytes += data.byteLength
    this.hash.update(data)
  }

  digest (): string { return this.hash.digest('hex') }
}
