/**
 * Receipt exports at scale, with real processes and a heap cap: `verify`
 * of 20,000 receipts and `receipts --export` of a running node's 20,000
 * run in a V8 heap too small for the whole file (the code before streaming
 * died there: verify at 48 MiB, the export at 24 MiB), a cut or altered
 * big file fails, and a node killed mid-export is a clear error, exit 1,
 * with output that fails verify.
 */
import { spawn } from 'node:child_process'
import { createReadStream, openSync, closeSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyExportStream } from '../../src/accounting/export.ts'
import { dataDirWithBigLedger, writeBigExport } from '../accounting/big-export.ts'
import { CLI, NodeProcess, tempDir } from '../utils/cli.ts'
import type { CliResult } from '../utils/cli.ts'

const COUNT = 20_000
const LOCAL = ['--network', 'local', '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--socks-port', '0', '--http-port', '0']

/**
 * The CLI in a V8 heap of `heapMiB`, stdout to `outFile` when given.
 * Without the relaunch: it would add the node runtime flags, and a
 * 128 MiB initial heap is not a test of a small one.
 */
async function runCapped (args: string[], heapMiB: number, outFile?: string, onStart?: (pid: number) => void): Promise<CliResult> {
  const out = outFile == null ? 'pipe' : openSync(outFile, 'w')
  const child = spawn(process.execPath, [`--max-old-space-size=${heapMiB}`, CLI, ...args], {
    env: { ...process.env, SPAREBAND_NO_RELAUNCH: '1' },
    stdio: ['ignore', out, 'pipe']
  })
  if (typeof out === 'number') closeSync(out)
  onStart?.(child.pid!)
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', d => { stdout += d })
  child.stderr!.on('data', d => { stderr += d })
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => child.on('exit', (c, s) => resolve([c, s])))
  return { code, signal, stdout, stderr }
}

describe('spareband verify of a big export in a small heap', () => {
  let dir: string

  beforeAll(async () => {
    dir = await tempDir('sb-export-scale-')
    await Promise.all([writeBigExport(join(dir, 'r.csv'), 'csv', COUNT), writeBigExport(join(dir, 'r.json'), 'json', COUNT)])
  })

  it.each(['csv', 'json'])('%s: verifies 20,000 receipts with a 32 MiB heap', async format => {
    const file = join(dir, `r.${format}`)
    const r = await runCapped(['verify', file], 32)
    expect(r.code, r.stderr.slice(0, 2000)).toBe(0)
    expect(r.stdout).toBe(`${file}: OK, ${COUNT} receipt(s) verified (${format})\n`)
  })

  it('fails the file cut short, and one with an altered byte far into it, naming the entry', async () => {
    const csv = await readFile(join(dir, 'r.csv'), 'utf8')
    const cut = join(dir, 'cut.csv')
    await writeFile(cut, csv.slice(0, Math.floor(csv.length * 0.6)))
    const c = await runCapped(['verify', cut], 32)
    expect(c.code).toBe(1)
    expect(c.stderr).toBe(`${cut}: no totals row at the end: the file is truncated, or is a CSV export of an older spareband, which wrote none (export it again)\n`)

    // the first character of entry 15,000's exit signature (the row's last cell)
    const json = await readFile(join(dir, 'r.json'), 'utf8')
    const at = json.indexOf('"exitSig": "', json.indexOf('"sessionId": "session-14999"')) + '"exitSig": "'.length
    const altered = join(dir, 'altered.json')
    await writeFile(altered, json.slice(0, at) + (json[at] === 'a' ? 'b' : 'a') + json.slice(at + 1))
    const a = await runCapped(['verify', altered], 32)
    expect(a.code).toBe(1)
    expect(a.stderr).toBe(`${altered}: entry 15000 (session session-14999) is bad: RECEIPT_ERROR_BAD_EXIT_SIGNATURE: exit signature does not verify\n`)
  })
})

describe('spareband receipts --export of a running node with a big ledger', () => {
  let dataDir: string
  let node: NodeProcess

  beforeAll(async () => {
    dataDir = await tempDir('sb-export-node-')
    await dataDirWithBigLedger(dataDir, COUNT)
    node = new NodeProcess(dataDir, LOCAL)
    await node.ready()
  })
  afterAll(async () => { await node?.kill() })

  it.each(['csv', 'json'] as const)('%s: writes all 20,000 as they come, with a 24 MiB heap', async format => {
    const file = join(dataDir, `export.${format}`)
    const r = await runCapped(['receipts', '--export', format, '--data-dir', dataDir], 24, file)
    expect(r.code, r.stderr.slice(0, 2000)).toBe(0)
    const text = await readFile(file, 'utf8')
    if (format === 'json') expect(JSON.parse(text)).toMatchObject({ version: 1, totals: { entries: COUNT, sessions: COUNT } })
    else expect(text.trimEnd().split('\n').at(-1)).toMatch(new RegExp(`^totals: ${COUNT} entries in ${COUNT} sessions,`))
  })

  it('a node killed mid-export: exit 1, a clear error, and output that fails verify', async () => {
    const file = join(dataDir, 'killed.json')
    let cliPid = 0
    const running = runCapped(['receipts', '--export', 'json', '--data-dir', dataDir], 64, file, pid => { cliPid = pid })
    // once part of the export is out, the node dies
    while ((await stat(file)).size < 1_000_000) await sleep(20)
    await node.kill()
    const r = await running
    expect(cliPid).toBeGreaterThan(0)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^spareband: receipts --export: the node for .* broke off its answer to \/v1\/receipts\?export=json after \d+ bytes \(.*\): did it stop\?; the output is incomplete \(and fails "spareband verify"\)\n$/)
    const size = (await stat(file)).size
    expect(size).toBeGreaterThan(1_000_000)
    const verdict = await verifyExportStream(createReadStream(file))
    expect(verdict).toMatchObject({ ok: false, index: 0 })
    expect(verdict.ok ? '' : verdict.reason).toMatch(/^not valid JSON \(a truncated JSON export\?\)/)
  })
})
