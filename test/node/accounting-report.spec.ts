/**
 * The `receipts` answers built from a ledger: limits are checked, an export
 * holds every receipt unless a limit is given.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Ledger } from '../../src/accounting/ledger.ts'
import { exportReceipts, verifyExport } from '../../src/accounting/export.ts'
import { EXPORT_BATCH, ExportAnswerError, exportAsJson, exportTextOfAnswer, parseReceiptLimit, receiptsReport } from '../../src/node/accounting-report.ts'
import type { ReceiptsExport } from '../../src/node/accounting-report.ts'

/** The text of an export, from its chunks. */
async function textOf (report: unknown): Promise<string> {
  let text = ''
  for await (const chunk of (report as ReceiptsExport).chunks) text += chunk
  return text
}
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
    const all = await textOf(receiptsReport(ledger, { export: 'json' }))
    expect(await verifyExport(all)).toMatchObject({ ok: true, entries: 4 })
    const two = await textOf(receiptsReport(ledger, { export: 'csv', limit: '2' }))
    expect(await verifyExport(two)).toMatchObject({ ok: true, entries: 2 })
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

describe('receiptsReport export of a large ledger', () => {
  let ledger: Ledger

  beforeAll(async () => {
    const [me, a] = await parties(2)
    ledger = Ledger.open(':memory:', { selfPeerId: peerIdFromPrivateKey(me.key) })
    for (let i = 0; i < 2 * EXPORT_BATCH + 1; i++) {
      await ledger.recordReceipt(await countersigned(a, me, { sessionId: `s-${i}`, updatedAt: 1_700_000_005_000n + BigInt(i) }), 'own', { verified: true })
    }
  })
  afterAll(() => ledger.close())

  it('comes a batch at a time, letting other work run between batches, with the bytes of a whole export', async () => {
    for (const format of ['csv', 'json'] as const) {
      const report = receiptsReport(ledger, { export: format }) as ReceiptsExport
      // what a node does meanwhile: carry tunnels, answer receipts
      let turns = 0
      const tick = setInterval(() => { turns++ }, 0)
      const chunks: string[] = []
      const turnsAt: number[] = []
      try {
        for await (const chunk of report.chunks) {
          chunks.push(chunk)
          turnsAt.push(turns)
        }
      } finally {
        clearInterval(tick)
      }
      expect(chunks).toHaveLength(3)
      // built at once, nothing else ran until the export was whole
      expect(turnsAt[2], format).toBeGreaterThan(turnsAt[0])
      const text = chunks.join('')
      expect(text).toBe(exportReceipts(ledger.receipts().map(r => r.receipt), format))
      expect(await verifyExport(text)).toMatchObject({ ok: true, entries: 2 * EXPORT_BATCH + 1 })
      // the API's answer is the JSON the control API writes for { format, text }
      let answer = ''
      for await (const chunk of exportAsJson(receiptsReport(ledger, { export: format }) as ReceiptsExport)) answer += chunk
      expect(answer).toBe(JSON.stringify({ format, text }, null, 2) + '\n')
    }
  })
})

describe('exportTextOfAnswer: the export out of the API answer, as it arrives', () => {
  /** The API's answer (exportAsJson) to an export of `text`, as bytes. */
  async function answerOf (text: string): Promise<Buffer> {
    let json = ''
    // pieces as the node makes them: whole receipts, here whole lines
    const chunks = (async function * () { for (const line of text.split(/(?<=\n)/)) yield line })()
    for await (const part of exportAsJson({ format: 'csv', chunks })) json += part
    return Buffer.from(json)
  }

  async function * split (bytes: Buffer, size: number): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
  }

  async function decode (bytes: Buffer, size: number): Promise<string> {
    let text = ''
    for await (const piece of exportTextOfAnswer(split(bytes, size))) text += piece
    return text
  }

  it('gives back the export byte for byte, however the answer is split (inside escapes and characters too)', async () => {
    const [a, b] = await parties(2)
    // quotes, commas and characters of 2-4 UTF-8 bytes; the writer escapes quotes
    const text = exportReceipts([await countersigned(a, b, { sessionId: 'é€😀 "q", \\ back' })], 'csv')
    const answer = await answerOf(text)
    expect(JSON.parse(answer.toString()).text).toBe(text)
    for (const size of [1, 2, 3, 5, 7, 64, 100_000]) expect(await decode(answer, size), `chunks of ${size}`).toBe(text)
  })

  it('throws for an answer cut anywhere, after handing out only a part of the export', async () => {
    const [a, b] = await parties(2)
    const text = exportReceipts([await countersigned(a, b, { sessionId: 's-"1"' })], 'json')
    const answer = await answerOf(text)
    // the answer ends '"\n}\n': without its last newline it is still whole
    for (let end = 0; end < answer.length - 1; end++) {
      let got = ''
      const error = await (async () => {
        try {
          for await (const piece of exportTextOfAnswer(split(answer.subarray(0, end), 3))) got += piece
        } catch (err) {
          return err
        }
      })()
      expect(error, `cut at ${end}`).toBeInstanceOf(ExportAnswerError)
      expect(text.startsWith(got)).toBe(true)
    }
    expect(await decode(answer.subarray(0, -1), 3)).toBe(text)
  })

  it('refuses an answer that is not an export', async () => {
    for (const body of ['{"error":"no"}', '[]', 'x'.repeat(1000), '{"format":"csv","text":"a"} trailing']) {
      await expect(decode(Buffer.from(body), 4), body.slice(0, 20)).rejects.toBeInstanceOf(ExportAnswerError)
    }
  })
})
