/**
 * Receipt exports: JSON and CSV round trips through verifyExport(),
 * detection of any single altered byte (every byte of the file is flipped
 * in turn, with two masks: one bit, and ASCII case), of lost, repeated and
 * added entries and of a file cut at any byte, and the whole-file messages.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { costMicro } from '../../src/accounting/credits.ts'
import { exportReceipts, verifyExport, verifyExportStream } from '../../src/accounting/export.ts'
import { manyReceipts } from './big-export.ts'
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

  it('rejects the file cut at any byte', async () => {
    for (const list of [receipts, []]) {
      const text = exportReceipts(list, format)
      // all but the final newline: cutting that loses nothing
      for (let end = 0; end < text.length - 1; end++) {
        const result = await verifyExport(text.slice(0, end))
        expect(result.ok, `cut at ${end} of ${text.length}: ${JSON.stringify(text.slice(Math.max(0, end - 20), end))}`).toBe(false)
      }
      expect(await verifyExport(text.slice(0, -1))).toMatchObject({ ok: true })
    }
  })
})

/** A CSV export's lines, without the empty string after the final newline. */
const csvLines = (list: CountersignedReceipt[]): string[] => exportReceipts(list, 'csv').split('\n').slice(0, -1)
const joined = (lines: string[]): string => lines.join('\n') + '\n'

describe('a CSV export declares its totals in a last row', () => {
  it('is one table: the header, a row per receipt, a totals row in the same columns', () => {
    const lines = csvLines(receipts)
    expect(lines).toHaveLength(5)
    const [, s1, s2] = receipts
    const cells = lines[4].split(',')
    expect(cells).toHaveLength(lines[0].split(',').length)
    expect(cells[0]).toBe('totals: 3 entries in 2 sessions')
    expect(cells[3]).toBe(String(s1.bytesUp + s2.bytesUp))
    expect(cells[4]).toBe(String(s1.bytesDown + s2.bytesDown))
    expect(cells[9]).toBe(String(costMicro(s1.bytesUp + s1.bytesDown, s1.pricePerGb) + costMicro(s2.bytesUp + s2.bytesDown, s2.pricePerGb)))
    expect(exportReceipts([], 'csv').split('\n')[1]).toBe('totals: 0 entries in 0 sessions,,,0,0,,,,,0,,')
  })

  it('fails when a row is dropped, whichever it is', async () => {
    const lines = csvLines(receipts)
    for (const row of [1, 2, 3]) {
      const result = await verifyExport(joined(lines.filter((_, i) => i !== row)))
      expect(result, `row ${row} dropped`).toMatchObject({ ok: false, index: 0 })
      expect(result.ok ? '' : result.reason).toMatch(/^the totals row counts 3 entries, the file holds 2: rows were dropped$/)
    }
  })

  it('fails when only the header is left, naming the truncation', async () => {
    const result = await verifyExport(csvLines(receipts)[0] + '\n')
    expect(result).toMatchObject({ ok: false, index: 0 })
    expect(result.ok ? '' : result.reason).toContain('truncated after its header')
  })

  it('fails when the totals row is missing, as in a file cut after a whole row or an export of an older spareband', async () => {
    const result = await verifyExport(joined(csvLines(receipts).slice(0, -1)))
    expect(result).toMatchObject({ ok: false, index: 0 })
    expect(result.ok ? '' : result.reason).toMatch(/no totals row at the end: the file is truncated, or is a CSV export of an older spareband/)
  })

  it('fails when a row is repeated, naming the repeat', async () => {
    const lines = csvLines(receipts)
    const result = await verifyExport(joined([...lines.slice(0, 4), lines[3], lines[4]]))
    expect(result).toMatchObject({ ok: false, index: 4, sessionId: receipts[2].sessionId })
    expect(result.ok ? '' : result.reason).toContain('repeats an earlier entry')
  })

  it('fails when rows follow the totals row, or the totals row is repeated', async () => {
    const lines = csvLines(receipts)
    const other = csvLines([receipts[2]])
    const joinedFiles = await verifyExport(joined([...lines, ...other.slice(1)]))
    expect(joinedFiles).toMatchObject({ ok: false, index: 4 })
    expect(joinedFiles.ok ? '' : joinedFiles.reason).toContain('a totals row before the last row')
    expect(await verifyExport(joined([...lines, lines[4]]))).toMatchObject({ ok: false, index: 4 })
  })

  it('fails when the totals row is edited, naming the total', async () => {
    const lines = csvLines(receipts)
    const cells = lines[4].split(',')
    cells[4] = String(BigInt(cells[4]) - 1n)
    const result = await verifyExport(joined([...lines.slice(0, 4), cells.join(',')]))
    expect(result).toMatchObject({ ok: false, index: 0 })
    expect(result.ok ? '' : result.reason).toMatch(/^the totals row's bytes_down is \d+, the receipts add up to \d+$/)
    const label = await verifyExport(joined([...lines.slice(0, 4), lines[4].replace('2 sessions', '3 sessions')]))
    expect(label.ok ? '' : label.reason).toBe("the totals row's sessions count is 3, the receipts add up to 2")
  })

  it('writes a session id a spreadsheet would run as a formula after a quote, and verifies it as signed', async () => {
    const risky = await Promise.all(['=HYPERLINK("http://x","y")', '+1', '-2+3', '@SUM(A1)', "'quoted"].map(async (sessionId, i) =>
      countersigned(alice, bob, { sessionId, seq: BigInt(i + 1) })))
    const text = exportReceipts(risky, 'csv')
    const cells = text.split('\n').slice(1, -2).map(line => line.replace(/^"/, ''))
    for (const cell of cells) expect(cell.startsWith("'")).toBe(true)
    const result = await verifyExport(text)
    if (!result.ok) throw new Error(`${result.index}: ${result.reason}`)
    expect(result.receipts.map(r => r.sessionId)).toEqual(risky.map(r => r.sessionId))
    // without the quote the line is not the canonical spelling: refused, not read as another id
    const unescaped = text.replace("'+1,", '+1,')
    expect(unescaped).not.toBe(text)
    expect((await verifyExport(unescaped)).ok).toBe(false)
  })

  it('accepts CRLF line endings on every line, and a byte order mark; not mixed line endings', async () => {
    const text = exportReceipts(receipts, 'csv')
    expect(await verifyExport(text.replaceAll('\n', '\r\n'))).toMatchObject({ ok: true, format: 'csv', entries: 3 })
    expect(await verifyExport('\ufeff' + text)).toMatchObject({ ok: true, format: 'csv', entries: 3 })
    const mixed = await verifyExport(text.replace('\n', '\r\n'))
    expect(mixed).toMatchObject({ ok: false, index: 0 })
    expect(mixed.ok ? '' : mixed.reason).toContain('mixed line endings')
    expect(await verifyExport('\ufeff' + exportReceipts(receipts, 'json'))).toMatchObject({ ok: true, format: 'json' })
  })

  it('takes blank lines at the end for no rows (jq -r adds a newline to the API\'s export), not one between rows', async () => {
    const text = exportReceipts(receipts, 'csv')
    expect(text.endsWith('\n')).toBe(true)
    for (const tail of ['\n', '\n\n\n', ' \n']) {
      expect(await verifyExport(text + tail), JSON.stringify(tail)).toMatchObject({ ok: true, format: 'csv', entries: 3 })
    }
    expect(await verifyExport((text + '\n').replaceAll('\n', '\r\n'))).toMatchObject({ ok: true, format: 'csv', entries: 3 })
    // a tool's newline need not match the file's line endings
    expect(await verifyExport(text.replaceAll('\n', '\r\n') + '\n')).toMatchObject({ ok: true, format: 'csv', entries: 3 })
    expect(await verifyExport(text + '\r\n')).toMatchObject({ ok: true, format: 'csv', entries: 3 })
    const lines = csvLines(receipts)
    const gap = await verifyExport(joined([...lines.slice(0, 2), '', ...lines.slice(2)]))
    expect(gap).toMatchObject({ ok: false, index: 2 })
  })
})

describe('a JSON export', () => {
  it('fails when an entry is dropped, naming the totals', async () => {
    const doc = JSON.parse(exportReceipts(receipts, 'json'))
    doc.receipts.splice(1, 1)
    const result = await verifyExport(JSON.stringify(doc))
    expect(result).toMatchObject({ ok: false, index: 0 })
    expect(result.ok ? '' : result.reason).toBe('totals.entries is 3, the file holds 2: entries were dropped')
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

  it('names whole-file problems as such, not as a bad entry', async () => {
    const cases: Array<[string, RegExp]> = [
      ['', /^empty file$/],
      [' \n', /^empty file \(white space only\)$/],
      ['null', /^not a spareband receipt export: the file is JSON null, not an object/],
      ['[1]', /^not a spareband receipt export: the file is a JSON array/],
      ['"receipts"', /^not a spareband receipt export: the file is a JSON string/],
      ['{"a":1}', /^not a spareband receipt export: a JSON object without "version" and "receipts"$/],
      ['{"version":2,"receipts":[]}', /^export version 2 is not one this spareband reads \(1\)$/],
      [exportReceipts(receipts, 'json').slice(0, 200), /^not valid JSON \(a truncated JSON export\?\)/],
      ['hello, world\n', /^not a spareband receipt export: neither JSON nor a CSV with the spareband header \(first line: "hello, world"\)$/]
    ]
    for (const [text, reason] of cases) {
      const result = await verifyExport(text)
      expect(result, JSON.stringify(text.slice(0, 40))).toMatchObject({ ok: false, index: 0 })
      expect(result.ok ? '' : result.reason, JSON.stringify(text.slice(0, 40))).toMatch(reason)
    }
  })

  it('rejects upper-case hex in signatures, which would otherwise decode to the same bytes', async () => {
    const csv = exportReceipts(receipts.slice(0, 1), 'csv')
    const sig = csv.split('\n')[1].split(',').at(-1)!
    expect(await verifyExport(csv.replace(sig, sig.toUpperCase()))).toMatchObject({ ok: false, index: 1 })
  })
})

describe('verifyExportStream reads a file a chunk at a time', () => {
  /** `text` as UTF-8 bytes in chunks of `size`: boundaries fall inside lines, values, escapes and characters. */
  function * chunks (text: string, size: number): Generator<Uint8Array> {
    const bytes = Buffer.from(text)
    for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
  }

  it.each(['json', 'csv'] as const)('%s: whatever the chunk size, the same answer as the whole text, for good, altered and cut files', async format => {
    // a session id with characters of 2, 3 and 4 UTF-8 bytes, so chunks split them
    const list = [...receipts, await countersigned(carol, alice, { sessionId: 'é€😀 "q"' })]
    const text = exportReceipts(list, format)
    const variants = [text, '\ufeff' + text, text.replaceAll('\n', '\r\n'), text.slice(0, text.length / 2), text.replace('3000000000', '3000000001'), text + '\n']
    for (let i = 0; i < text.length; i += 37) variants.push(flipped(text, i, 0x01))
    for (const variant of variants) {
      const { receipts: _, ...whole } = await verifyExport(variant) as any
      for (const size of [1, 2, 3, 7, 64, 4096]) {
        expect(await verifyExportStream(chunks(variant, size)), `${JSON.stringify(variant.slice(0, 30))}... in chunks of ${size}`).toEqual(whole)
      }
    }
  })

  it('throws what the source throws (a file that cannot be read), not a verdict on it', async () => {
    async function * failing (): AsyncGenerator<Uint8Array> {
      yield Buffer.from(exportReceipts(receipts, 'csv').slice(0, 100))
      throw Object.assign(new Error('read failed'), { code: 'EIO' })
    }
    await expect(verifyExportStream(failing())).rejects.toMatchObject({ code: 'EIO' })
  })

  it('does not take a JSON value that only starts like an export', async () => {
    const text = exportReceipts(receipts, 'json')
    const cases: Array<[string, RegExp]> = [
      [text.replace('"receipts": [', '"receipts": [], "receipts": ['), /^not a version 1 receipt export: "receipts" appears twice$/],
      [text.replace(/\n}\n$/, ',\n  "extra": 1\n}\n'), /^not a version 1 receipt export: /],
      [text + '{}', /^not valid JSON \(a truncated JSON export\?\): /],
      [`[${'1,'.repeat(1000)}1]`, /^not a spareband receipt export: the file is a JSON array/],
      ['\v{}', /^not valid JSON/]
    ]
    for (const [variant, reason] of cases) {
      const result = await verifyExportStream(chunks(variant, 5))
      expect(result.ok ? '' : result.reason, variant.slice(0, 40)).toMatch(reason)
    }
  })
})

describe('verifyExportStream with signatures checked on worker threads', () => {
  let text: string

  beforeAll(async () => {
    // 700 receipts over 350 sessions: several batches of signatures in flight at once
    const list: CountersignedReceipt[] = []
    for await (const r of manyReceipts(700, 350)) list.push(r)
    text = exportReceipts(list, 'csv')
  })

  /** The CSV with data row `row` (1-based) changed by `change`. */
  function withRow (row: number, change: (line: string) => string): string {
    const lines = text.split('\n')
    lines[row] = change(lines[row])
    return lines.join('\n')
  }
  const badSignature = (line: string): string => line.slice(0, -1) + (line.endsWith('a') ? 'b' : 'a')
  const regressed = (line: string): string => line.replace(/^session-(\d+),/, 'session-0,')

  it('gives the answer checking in turn gives: the first fault in the file, a signature before the same entry\'s other faults', async () => {
    const variants = [
      text,
      withRow(400, badSignature),
      // a forged entry whose counters would make a later one look regressed: the forgery is named
      withRow(600, regressed),
      withRow(300, badSignature).replace(/\n[^\n]*\n$/, '\n'),
      withRow(500, badSignature).slice(0, text.length - 5000),
      withRow(420, line => badSignature(regressed(line))),
      withRow(650, badSignature).replace('\n', '\r\n')
    ]
    for (const [k, variant] of variants.entries()) {
      const inTurn = await verifyExportStream([variant])
      expect(inTurn.ok, `variant ${k}`).toBe(k === 0)
      expect(await verifyExportStream([variant], { signatureThreads: 2 }), `variant ${k}: ${inTurn.ok ? 'ok' : `${inTurn.index} ${inTurn.reason}`}`).toEqual(inTurn)
    }
    expect(await verifyExportStream([text], { signatureThreads: 2 })).toMatchObject({ ok: true, entries: 700 })
    expect(await verifyExportStream([withRow(400, badSignature)], { signatureThreads: 2 })).toMatchObject({ ok: false, index: 400, reason: 'RECEIPT_ERROR_BAD_EXIT_SIGNATURE: exit signature does not verify' })
  })
})
