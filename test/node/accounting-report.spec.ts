/**
 * The `receipts` answers built from a ledger: limits are checked, an export
 * holds every receipt unless a limit is given.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Ledger } from '../../src/accounting/ledger.ts'
import { verifyExport } from '../../src/accounting/export.ts'
import { parseReceiptLimit, receiptsReport } from '../../src/node/accounting-report.ts'
import { countersigned, parties } from '../accounting/fixtures.ts'

describe('parseReceiptLimit', () => {
  it('takes positive integers in decimal digits', () => {
    expect(parseReceiptLimit('1')).toBe(1)
    expect(parseReceiptLimit('1000')).toBe(1000)
    expect(parseReceiptLimit('007')).toBe(7)
    expect(parseReceiptLimit(String(Number.MAX_SAFE_INTEGER))).toBe(Number.MAX_SAFE_INTEGER)
  })

  it('refuses anything else, naming the value, instead of rounding it or falling back to a default', () => {
    for (const text of ['abc', '0', '00', '-3', '1.5', '1e30', '', ' 5', '5 ', '+5', '0x10', 'Infinity']) {
      expect(() => parseReceiptLimit(text), JSON.stringify(text)).toThrow(`"${text}" is not a positive integer`)
    }
    expect(() => parseReceiptLimit('99999999999999999999')).toThrow(`up to ${Number.MAX_SAFE_INTEGER}`)
  })
})

describe('receiptsReport', () => {
  let ledger: Ledger

  beforeAll(async () => {
    const [me, a, b] = await parties(3)
    ledger = Ledger.open(':memory:', { selfPeerId: peerIdFromPrivateKey(me.key) })
    for (let i = 0; i < 4; i++) await ledger.recordReceipt(await countersigned(i % 2 === 0 ? a : b, me, { sessionId: `s-${i}`, updatedAt: 1_700_000_005_000n + BigInt(i) }), 'own')
  })
  afterAll(() => ledger.close())

  it('exports every receipt when no limit is given, and as many as asked otherwise', async () => {
    const all = receiptsReport(ledger, { export: 'json' }) as { text: string }
    expect(await verifyExport(all.text)).toMatchObject({ ok: true, entries: 4 })
    const two = receiptsReport(ledger, { export: 'csv', limit: '2' }) as { text: string }
    expect(await verifyExport(two.text)).toMatchObject({ ok: true, entries: 2 })
    expect(receiptsReport(ledger, {})).toHaveLength(4)
    expect(receiptsReport(ledger, { limit: '3' })).toHaveLength(3)
  })

  it('answers a bad limit, peer or format with a 400 that names it', () => {
    for (const limit of ['1.5', '1e30', 'abc', '0', '-3']) {
      expect(() => receiptsReport(ledger, { limit }), limit).toThrow(expect.objectContaining({ name: 'HttpError', status: 400, message: `limit "${limit}" is not a positive integer` }))
      expect(() => receiptsReport(ledger, { limit, export: 'csv' }), limit).toThrow(expect.objectContaining({ status: 400 }))
    }
    expect(() => receiptsReport(ledger, { peer: 'nope' })).toThrow(expect.objectContaining({ status: 400, message: '"nope" is not a peer id' }))
    expect(() => receiptsReport(ledger, { export: 'xml' })).toThrow(expect.objectContaining({ status: 400, message: 'export format "xml" is not csv or json' }))
  })
})
