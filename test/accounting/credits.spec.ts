/**
 * Credit arithmetic and the identity proof of work (at 8 bits, so each
 * solve takes ~256 hashes).
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { BYTES_PER_GB, DEFAULT_ALLOWANCE_MICRO, DEFAULT_POW_DIFFICULTY } from '../../src/accounting/constants.ts'
import { costMicro, formatCredits, leadingZeroBits, parseCredits, powDigest, solvePow, solvePowInWorker, verifyPow } from '../../src/accounting/credits.ts'

// PoW works over any bytes; fixed ones keep the test deterministic
const PEER = new Uint8Array(38).map((_, i) => i * 7)
const OTHER = new Uint8Array(38).map((_, i) => 255 - i)

describe('costMicro', () => {
  it('charges price per 10^9 bytes, rounded up', () => {
    expect(costMicro(0n, 1_000_000n)).toBe(0n)
    expect(costMicro(1n, 1_000_000n)).toBe(1n)
    expect(costMicro(BYTES_PER_GB, 1_000_000n)).toBe(1_000_000n)
    expect(costMicro(BYTES_PER_GB + 1n, 1_000_000n)).toBe(1_000_001n)
    expect(costMicro(1_500n, 1_000_000n)).toBe(2n)
    expect(costMicro(123n, 0n)).toBe(0n)
  })

  it('never charges less than the exact amount, and less than one micro-credit more', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: 1n << 62n }), fc.bigInt({ min: 0n, max: 1n << 40n }), (bytes, price) => {
      const cost = costMicro(bytes, price)
      expect(cost * BYTES_PER_GB >= bytes * price).toBe(true)
      expect((cost - 1n) * BYTES_PER_GB < bytes * price || cost === 0n).toBe(true)
    }))
  })

  it('refuses negative inputs', () => {
    expect(() => costMicro(-1n, 1n)).toThrow(RangeError)
  })

  it('makes the default allowance 1 GB at the default price', () => {
    expect(DEFAULT_ALLOWANCE_MICRO).toBe(1_000_000n)
    expect(DEFAULT_POW_DIFFICULTY).toBe(20)
  })
})

describe('credit formatting', () => {
  it('formats micro-credits as credits', () => {
    expect(formatCredits(0n)).toBe('0')
    expect(formatCredits(1_000_000n)).toBe('1')
    expect(formatCredits(1_500_000n)).toBe('1.5')
    expect(formatCredits(1n)).toBe('0.000001')
    expect(formatCredits(-250n)).toBe('-0.00025')
  })

  it('parses what it formats', () => {
    fc.assert(fc.property(fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }), micro => {
      expect(parseCredits(formatCredits(micro))).toBe(micro)
    }))
    expect(parseCredits('2.25')).toBe(2_250_000n)
    expect(() => parseCredits('1.0000001')).toThrow(RangeError)
    expect(() => parseCredits('abc')).toThrow(RangeError)
  })
})

describe('proof of work', () => {
  it('solves and verifies 8 bits, returning the smallest nonce', async () => {
    const nonce = await solvePow(PEER, 8)
    expect(verifyPow(PEER, nonce, 8)).toBe(true)
    expect(leadingZeroBits(powDigest(PEER, nonce))).toBeGreaterThanOrEqual(8)
    for (let n = 0n; n < nonce; n++) expect(verifyPow(PEER, n, 8)).toBe(false)
  })

  it('binds the proof to the peer id and the difficulty', async () => {
    const nonce = await solvePow(PEER, 8)
    const bits = leadingZeroBits(powDigest(PEER, nonce))
    expect(verifyPow(PEER, nonce, bits + 1)).toBe(false)
    const other = await solvePow(OTHER, 8)
    expect(other).not.toBe(nonce)
    expect(verifyPow(OTHER, nonce, 8)).toBe(false)
  })

  it('refuses nonces and difficulties out of range without throwing', () => {
    expect(verifyPow(PEER, -1n, 0)).toBe(false)
    expect(verifyPow(PEER, 1n << 64n, 0)).toBe(false)
    expect(verifyPow(PEER, 0n, 257)).toBe(false)
    expect(verifyPow(PEER, 0n, 1.5)).toBe(false)
    expect(verifyPow(PEER, 0n, 0)).toBe(true)
  })

  it('counts leading zero bits', () => {
    expect(leadingZeroBits(new Uint8Array([0x80]))).toBe(0)
    expect(leadingZeroBits(new Uint8Array([0x00, 0x01]))).toBe(15)
    expect(leadingZeroBits(new Uint8Array(32))).toBe(256)
  })

  it('on a worker thread: the same smallest nonce, while the event loop stays free', async () => {
    for (const [peer, bits] of [[PEER, 8], [OTHER, 12], [PEER, 14]] as const) {
      let ticks = 0
      const ticker = setInterval(() => { ticks++ }, 1)
      const started = performance.now()
      const nonce = await solvePowInWorker(peer, bits)
      const ms = performance.now() - started
      clearInterval(ticker)
      expect(nonce).toBe(await solvePow(peer, bits))
      expect(verifyPow(peer, nonce, bits)).toBe(true)
      // the timer kept firing while the worker hashed (a blocked loop would not tick at all)
      if (ms > 50) expect(ticks).toBeGreaterThan(ms / 10)
    }
  })

  it('a worker solve can be aborted, and stops', async () => {
    const controller = new AbortController()
    const solving = solvePowInWorker(PEER, 64, { signal: controller.signal })
    setTimeout(() => controller.abort(), 20)
    await expect(solving).rejects.toHaveProperty('name', 'AbortError')
    const pre = new AbortController()
    pre.abort()
    await expect(solvePowInWorker(PEER, 8, { signal: pre.signal })).rejects.toHaveProperty('name', 'AbortError')
    await expect(solvePowInWorker(PEER, 300)).rejects.toThrow(RangeError)
  })

  it('can be aborted', async () => {
    const controller = new AbortController()
    const solving = solvePow(PEER, 64, { signal: controller.signal, batch: 1024 })
    controller.abort()
    await expect(solving).rejects.toHaveProperty('name', 'AbortError')
  })
})
