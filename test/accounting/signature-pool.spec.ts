import { describe, it, expect } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { SignaturePool, SignatureThreadError } from '../../src/accounting/signature-pool.ts'
import { tempDir } from '../utils/cli.ts'

const job = { index: 1, data: new Uint8Array(10), consumerKey: new Uint8Array(32), exitKey: new Uint8Array(32), consumerSig: new Uint8Array(64), exitSig: new Uint8Array(64) }

describe('signature pool', () => {
  it('a thread that ends with checks unanswered fails them, and every later batch, instead of leaving them waiting for ever', async () => {
    // a stand-in thread that dies as one killed or out of memory would: without a word
    const script = join(await tempDir('sb-sigpool-'), 'dies.mjs')
    await writeFile(script, 'process.exit(7)\n')
    const pool = new SignaturePool(1, pathToFileURL(script))
    try {
      const err = await pool.check([job]).catch(e => e)
      expect(err).toBeInstanceOf(SignatureThreadError)
      expect(err.message).toMatch(/exit code 7/)
      await expect(pool.check([job])).rejects.toThrow(/exit code 7/)
    } finally {
      await pool.close()
    }
  })

  it('the real threads answer a batch: a bad signature is named', async () => {
    const pool = new SignaturePool(2)
    try {
      expect(await pool.check([job, { ...job, index: 2 }])).toEqual({ index: 1, which: 'consumer' })
    } finally {
      await pool.close()
    }
  })
})
