/**
 * Receipt exports: JSON and CSV round trips through verifyExport(), and
 * detection of any single altered byte (every byte of the file is flipped
 * in turn, with two masks: one bit, and ASCII case).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { costMicro } from '../../src/accounting/credits.ts'
import { exportReceipts, verifyExport } from '../../src/accounting/export.ts'
import { countersigned, parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { CountersignedReceipt } from '../../src/accounting/receipts.ts'

let alice: Party
let bob: Party
let carol: Party
let receipts: CountersignedReceipt[]

beforeAll(async () => {
  [alice, bob, carol] = await parties(3)
  receipts = [
    await countersigned(alice, bob, { sessionId: 's-1', seq: 1n, bytesUp: 10n, bytesDown: 1_000n }),
    await countersigned(alice, bob, { sessionId: 's-1', seq: 2n, bytesUp: 20n, bytesDown: 3_000_000_000n, updatedAt: 1_700_000_009_000n }),
    // quotes and commas exercise CSV quoting
    await countersigned(bob, carol, { sessionId: 'he said "hi", then left', pricePerGb: 2_500_000n })
  ]
})

function flipped (text: string, index: number, mask: number): string {
  const bytes = Buffer.from(text)
  bytes[index] ^= mask
  return bytes.toString()
}

describe.each(['json', 'csv'] as const)('%s export', format => {
  it('verifies and recomputes the totals from the newest receipt of each session', async () => {
    const text = exportReceipts(receipts, format)
    const result = await verifyExport(text)
    if (!result.ok) throw new Error(`${result.index}: ${result.reason}`)
    expect(result.format).toBe(format)
    expect(result.entries).toBe(3)
    expect(result.receipts).toEqual(receipts)
    const [, s1, s2] = receipts
    expect(result.totals).toEqual({
      entries: 3,
      sessions: 2,
      bytesUp: s1.bytesUp + s2.bytesUp,
      bytesDown: s1.bytesDown + s2.bytesDown,
      costMicro: costMicro(s1.bytesUp + s1.bytesDown, s1.pricePerGb) + costMicro(s2.bytesUp + s2.bytesDown, s2.pricePerGb)
    })
  })

  it('rejects every single altered byte', async () => {
    const text = exportReceipts(receipts, format)
    const length = Buffer.byteLength(text)
    for (let i = 0; i < length; i++) {
      for (const mask of [0x01, 0x20]) {
        const result = await verifyExport(flipped(text, i, mask))
        expect(result.ok, `byte ${i} ^ 0x${mask.toString(16)}: ${JSON.stringify(text[i])}`).toBe(false)
      }
    }
  })

  it('names the first bad entry and its session', async () => {
    const text = exportReceipts(receipts, format)
    const altered = text.replace('3000000000', '3000000001')
    expect(await verifyExport(altered)).toMatchObject({ ok: false, index: 2, sessionId: 's-1' })
  })

  it('rejects entries of a session whose counters go backwards, and repeated entries', async () => {
    const swapped = await verifyExport(exportReceipts([receipts[1], receipts[0]], format))
    expect(swapped).toMatchObject({ ok: false, index: 2, sessionId: 's-1' })
    expect(swapped.ok ? '' : swapped.reason).toContain('REGRESSED')
    expect(await verifyExport(exportReceipts([receipts[2], receipts[2]], format))).toMatchObject({ ok: false, index: 2 })
  })

  it('accepts an empty export', async () => {
    expect(await verifyExport(exportReceipts([], format))).toMatchObject({ ok: true, entries: 0 })
  })
})

describe('format errors', () => {
  it('rejects an unknown CSV header, wrong JSON version, edited totals and stray keys', async () => {
    expect(await verifyExport('a,b,c\n1,2,3\n')).toMatchObject({ ok: false, index: 0 })
    const json = JSON.parse(exportReceipts(receipts, 'json'))
    expect(await verifyExport(JSON.stringify({ ...json, version: 2 }))).toMatchObject({ ok: false, index: 0 })
    expect(await verifyExport(JSON.stringify({ ...json, totals: { ...json.totals, costMicro: '1' } }))).toMatchObject({ ok: false, index: 0 })
    const stray = { ...json, receipts: [json.receipts[0], { ...json.receipts[1], note: 'x' }] }
    expect(await verifyExport(JSON.stringify(stray))).toMatchObject({ ok: false, index: 2 })
    expect(await verifyExport('{ not json')).toMatchObject({ ok: false, index: 0 })
    expect(await verifyExport('')).toMatchObject({ ok: false, index: 0 })
  })

  it('rejects upper-case hex in signatures, which would otherwise decode to the same bytes', async () => {
    const csv = exportReceipts(receipts.slice(0, 1), 'csv')
    const sig = csv.trimEnd().split(',').at(-1)!
    expect(await verifyExport(csv.replace(sig, sig.toUpperCase()))).toMatchObject({ ok: false, index: 1 })
  })
})
