/**
 * The accounting commands as a user runs them, with real processes and real
 * files: `spareband verify` on whole exports and on damaged ones.
 */
import { describe, it, expect, beforeAll } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { exportReceipts } from '../../src/accounting/export.ts'
import { countersigned, parties } from '../accounting/fixtures.ts'
import { runCli, tempDir } from '../utils/cli.ts'
import type { CountersignedReceipt } from '../../src/accounting/receipts.ts'

let receipts: CountersignedReceipt[]

beforeAll(async () => {
  const [alice, bob, carol] = await parties(3)
  receipts = [
    await countersigned(alice, bob, { sessionId: 's-1' }),
    await countersigned(bob, carol, { sessionId: 's-2' }),
    await countersigned(carol, alice, { sessionId: 's-3' })
  ]
})

describe('spareband verify', () => {
  /** Writes `text` to a file and verifies it with the CLI. */
  async function verify (name: string, text: string): Promise<{ file: string, code: number | null, stdout: string, stderr: string }> {
    const file = join(await tempDir('sb-verify-'), name)
    await writeFile(file, text)
    return { file, ...await runCli(['verify', file]) }
  }

  it('passes untouched exports, CSV with CRLF line endings too', async () => {
    const csv = exportReceipts(receipts, 'csv')
    for (const [name, text, format] of [['r.csv', csv, 'csv'], ['r.json', exportReceipts(receipts, 'json'), 'json'], ['crlf.csv', csv.replaceAll('\n', '\r\n'), 'csv']]) {
      const r = await verify(name, text)
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toBe(`${r.file}: OK, 3 receipt(s) verified (${format})\n`)
    }
  })

  it('fails a CSV with a row dropped, cut short, left with its header only, or with a row repeated, saying which', async () => {
    const lines = exportReceipts(receipts, 'csv').split('\n')
    const cases: Array<[string, string, RegExp]> = [
      ['dropped.csv', [lines[0], lines[1], lines[3], lines[4], ''].join('\n'), /: the totals row counts 3 entries, the file holds 2: rows were dropped\n$/],
      ['cut.csv', lines.slice(0, 3).join('\n') + '\n' + lines[3].slice(0, 40), /: no totals row at the end: the file is truncated/],
      ['header.csv', lines[0] + '\n', /: no rows, not even the totals row: the file is truncated after its header\n$/],
      ['repeated.csv', [lines[0], lines[1], lines[2], lines[2], lines[3], lines[4], ''].join('\n'), /: entry 3 \(session s-2\) is bad: repeats an earlier entry of the session\n$/]
    ]
    for (const [name, text, message] of cases) {
      const r = await verify(name, text)
      expect(r.code, name).toBe(1)
      expect(r.stderr, name).toMatch(message)
      expect(r.stderr.startsWith(r.file)).toBe(true)
    }
  })

  it('names whole-file problems as such, not as "entry 0"', async () => {
    const cases: Array<[string, string, string]> = [
      ['empty.csv', '', 'empty file'],
      ['null.json', 'null', 'not a spareband receipt export: the file is JSON null, not an object with "version", "receipts" and "totals"'],
      ['array.json', '[1]', 'not a spareband receipt export: the file is a JSON array, not an object with "version", "receipts" and "totals"'],
      ['cut.json', exportReceipts(receipts, 'json').slice(0, 100), 'not valid JSON (a truncated JSON export?)'],
      ['mixed.csv', exportReceipts(receipts, 'csv').replace('\n', '\r\n'), 'mixed line endings: some lines end in CRLF, others in LF']
    ]
    for (const [name, text, message] of cases) {
      const r = await verify(name, text)
      expect(r.code, name).toBe(1)
      expect(r.stderr, name).toContain(`${r.file}: ${message}`)
      expect(r.stderr, name).not.toContain('entry 0')
    }
  })
})
