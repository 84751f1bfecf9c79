/**
 * Credit arithmetic and the identity proof of work.
 *
 * Credits are integer micro-credits (bigint) so sums over millions of
 * receipts stay exact. The proof of work (S/Kademlia's "crypto puzzle" on
 * the node id) makes each identity cost ~1 s of CPU before it receives the
 * starting allowance: a sybil ring signing receipts between its own keys can
 * mint at most one allowance per solved puzzle.
 */

import { hash } from 'node:crypto'
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import { Worker } from 'node:worker_threads'
import { BYTES_PER_GB, MICRO_PER_CREDIT, POW_DOMAIN } from './constants.ts'
import type { AbortOptions } from '@libp2p/interface'

const UINT64_MAX = (1n << 64n) - 1n

/**
 * What `bytes` cost at `pricePerGbMicro` micro-credits per 10^9 bytes,
 * rounded up: an exit is never paid less than it carried, and a session of
 * a few bytes still costs one micro-credit.
 */
export function costMicro (bytes: bigint, pricePerGbMicro: bigint): bigint {
  if (bytes < 0n || pricePerGbMicro < 0n) throw new RangeError('bytes and price must not be negative')
  const product = bytes * pricePerGbMicro
  return (product + BYTES_PER_GB - 1n) / BYTES_PER_GB
}

/** `1500000n` → `"1.5"`, `-250n` → `"-0.00025"`: credits with up to six decimals, no trailing zeros. */
export function formatCredits (micro: bigint): string {
  const sign = micro < 0n ? '-' : ''
  const abs = micro < 0n ? -micro : micro
  const whole = abs / MICRO_PER_CREDIT
  const frac = (abs % MICRO_PER_CREDIT).toString().padStart(6, '0').replace(/0+$/, '')
  return `${sign}${whole}${frac === '' ? '' : `.${frac}`}`
}

const CREDITS_PATTERN = /^(-?)(\d+)(?:\.(\d{1,6}))?$/

/** The inverse of formatCredits: `"1.5"` → `1500000n`. Throws RangeError on anything else. */
export function parseCredits (text: string): bigint {
  const m = CREDITS_PATTERN.exec(text.trim())
  if (m == null) throw new RangeError(`"${text}" is not an amount of credits (up to 6 decimals)`)
  const micro = BigInt(m[2]) * MICRO_PER_CREDIT + BigInt((m[3] ?? '').padEnd(6, '0'))
  return m[1] === '-' ? -micro : micro
}

/** Leading zero bits of a digest (0..256). */
export function leadingZeroBits (digest: Uint8Array): number {
  let bits = 0
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8
      continue
    }
    return bits + Math.clz32(byte) - 24
  }
  return bits
}

/** `POW_DOMAIN || peerIdBytes || 8 bytes of nonce`, the nonce slot left zero. */
function powInput (peerIdBytes: Uint8Array): Uint8Array {
  const domain = new TextEncoder().encode(POW_DOMAIN)
  const input = new Uint8Array(domain.byteLength + peerIdBytes.byteLength + 8)
  input.set(domain)
  input.set(peerIdBytes, domain.byteLength)
  return input
}

function checkDifficulty (difficultyBits: number): void {
  if (!Number.isInteger(difficultyBits) || difficultyBits < 0 || difficultyBits > 256) {
    throw new RangeError(`difficulty ${difficultyBits} is not 0-256 bits`)
  }
}

/** sha256(POW_DOMAIN || peerIdBytes || nonce as 8 bytes big-endian). */
export function powDigest (peerIdBytes: Uint8Array, nonce: bigint): Uint8Array {
  const input = powInput(peerIdBytes)
  new DataView(input.buffer).setBigUint64(input.byteLength - 8, nonce)
  return hash('sha256', input, 'buffer')
}

/** A proof-of-work nonce on the wire: 8 bytes big-endian. */
export function encodePowNonce (nonce: bigint): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(8)
  new DataView(bytes.buffer).setBigUint64(0, nonce)
  return bytes
}

/** The inverse of encodePowNonce; undefined for anything but 8 bytes. */
export function decodePowNonce (bytes: Uint8Array): bigint | undefined {
  if (bytes.byteLength !== 8) return undefined
  return new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0)
}

/** True when `nonce` proves `difficultyBits` of work for this peer id. Never throws on bad input. */
export function verifyPow (peerIdBytes: Uint8Array, nonce: bigint, difficultyBits: number): boolean {
  if (typeof nonce !== 'bigint' || nonce < 0n || nonce > UINT64_MAX) return false
  if (!Number.isInteger(difficultyBits) || difficultyBits < 0 || difficultyBits > 256) return false
  return leadingZeroBits(powDigest(peerIdBytes, nonce)) >= difficultyBits
}

export interface SolvePowOptions extends AbortOptions {
  /**
   * Hashes between two yields to the event loop, so a node solving its
   * puzzle still answers its peers.
   *
   * @default 65536
   */
  batch?: number
}

/**
 * Finds the smallest nonce that meets the difficulty. Expected work is
 * 2^difficultyBits hashes (20 bits: ~1M hashes, about 1 s).
 */
export async function solvePow (peerIdBytes: Uint8Array, difficultyBits: number, options: SolvePowOptions = {}): Promise<bigint> {
  checkDifficulty(difficultyBits)
  options.signal?.throwIfAborted()
  const batch = options.batch ?? 65_536
  const input = powInput(peerIdBytes)
  const view = new DataView(input.buffer)
  const at = input.byteLength - 8
  // the nonce as two uint32 halves: Number arithmetic is much faster than bigint in the hot loop
  for (let high = 0; high <= 0xffff_ffff; high++) {
    view.setUint32(at, high)
    for (let low = 0; low <= 0xffff_ffff; low++) {
      view.setUint32(at + 4, low)
      if (leadingZeroBits(hash('sha256', input, 'buffer')) >= difficultyBits) {
        return (BigInt(high) << 32n) | BigInt(low)
      }
      if (low % batch === batch - 1) {
        options.signal?.throwIfAborted()
        await yieldToEventLoop()
      }
    }
  }
  throw new RangeError(`no nonce meets ${difficultyBits} bits`)
}

/**
 * The worker's module, next to this one: `.ts` when running from the
 * sources (tests, with node's type stripping), `.js` from dist.
 */
const POW_WORKER = new URL(`./pow-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url)

/**
 * solvePow on a worker thread: a node serving traffic while it solves its
 * puzzle must not stall its event loop for a batch of hashes at a time.
 * Same answer as solvePow (the smallest nonce); aborting stops the worker.
 */
export async function solvePowInWorker (peerIdBytes: Uint8Array, difficultyBits: number, options: AbortOptions = {}): Promise<bigint> {
  checkDifficulty(difficultyBits)
  options.signal?.throwIfAborted()
  const worker = new Worker(POW_WORKER, { workerData: { peerIdBytes, difficultyBits } })
  // never what keeps a process alive
  worker.unref()
  return new Promise<bigint>((resolve, reject) => {
    let settled = false
    const settle = (fn: () => void): void => {
      if (settled) return
      settled = true
      options.signal?.removeEventListener('abort', onAbort)
      fn()
    }
    const onAbort = (): void => settle(() => { void worker.terminate(); reject(options.signal?.reason ?? new Error('aborted')) })
    options.signal?.addEventListener('abort', onAbort, { once: true })
    worker.once('message', (nonce: bigint) => settle(() => {
      if (typeof nonce === 'bigint' && verifyPow(peerIdBytes, nonce, difficultyBits)) resolve(nonce)
      else reject(new Error(`proof of work worker answered ${String(nonce)}, which does not verify`))
    }))
    worker.once('error', err => settle(() => reject(err)))
    worker.once('exit', code => settle(() => reject(new Error(`proof of work worker exited with code ${code} before an answer`))))
  })
}
