/**
 * The accounting commands as a user runs them, with real processes and real
 * files: `spareband verify` on whole exports and on damaged ones,
 * `spareband receipts` against a running node whose ledger holds more
 * receipts than a listing shows, and `balance` / `receipts` reading
 * ledger.db when no node runs.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { exportReceipts } from '../../src/accounting/export.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { solvePow } from '../../src/accounting/credits.ts'
import { createIdentity } from '../../src/node/identity.ts'
import { callApi } from '../../src/cli/api-client.ts'
import { countersigned, parties } from '../accounting/fixtures.ts'
import { CLI, NodeProcess, runCli, runCliJson, tempDir, waitFor } from '../utils/cli.ts'
import type { Party } from '../accounting/fixtures.ts'
import type { CountersignedReceipt } from '../../src/accounting/receipts.ts'

const LOCAL = ['--network', 'local', '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--socks-port', '0', '--http-port', '0']

const procs: NodeProcess[] = []
afterAll(async () => { await Promise.all(procs.map(async p => p.kill())) })

/**
 * A data directory with an identity and a ledger.db holding `count`
 * countersigned sessions in which this node was the exit, written as a
 * node would (Ledger.open with the node's peer id).
 */
async function dataDirWithLedger (count: number): Promise<{ dataDir: string, self: Party }> {
  const dataDir = await tempDir('sb-acct-cli-')
  const identity = await createIdentity(dataDir)
  const self: Party = { key: identity.privateKey, bytes: identity.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, id: identity.peerId.toString() }
  const [consumer] = await parties(1)
  // the difficulty the nodes here run with (SPAREBAND_POW_DIFFICULTY): the consumer's allowance pays this node
  const ledger = Ledger.open(join(dataDir, 'ledger.db'), { selfPeerId: identity.peerId, powDifficulty: 8 })
  try {
    ledger.recordPow(consumer.bytes, await solvePow(consumer.bytes, 8), 8)
    for (let i = 0; i < count; i++) {
      await ledger.recordReceipt(await countersigned(consumer, self, { sessionId: `s-${i}`, bytesDown: 1_000_000n + BigInt(i), updatedAt: 1_700_000_005_000n + BigInt(i) }), 'own')
    }
  } finally {
    ledger.close()
  }
  return { dataDir, self }
}

/** Data rows of a CSV export: without the header and the totals row. */
const csvRows = (text: string): string[] => text.trimEnd().split('\n').slice(1, -1)

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

  it('a file that is not there, or a directory, is named with the reason in words (exit 2)', async () => {
    const dir = await tempDir('sb-verify-')
    const missing = await runCli(['verify', join(dir, 'nope.json')])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toBe(`spareband: cannot read ${join(dir, 'nope.json')}: no such file (ENOENT)\n`)
    const directory = await runCli(['verify', dir])
    expect(directory.code).toBe(2)
    expect(directory.stderr).toBe(`spareband: cannot read ${dir}: it is a directory (EISDIR)\n`)
  })

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

describe('spareband receipts, against a running node', () => {
  // one more than a listing shows by default (DEFAULT_RECEIPT_LIST_LIMIT)
  const COUNT = 1001
  let dataDir: string

  beforeAll(async () => {
    ({ dataDir } = await dataDirWithLedger(COUNT))
    const node = new NodeProcess(dataDir, LOCAL)
    procs.push(node)
    await node.ready()
  })

  it('--export holds every receipt, not the newest 1000; --limit caps it when given', async () => {
    const dir = await tempDir('sb-acct-export-')
    for (const format of ['csv', 'json'] as const) {
      const all = await runCli(['receipts', '--export', format, '--data-dir', dataDir])
      expect(all.code, all.stderr).toBe(0)
      const file = join(dir, `all.${format}`)
      await writeFile(file, all.stdout)
      const verified = await runCli(['verify', '--json', file])
      expect(verified.code, verified.stdout).toBe(0)
      expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, entries: COUNT, totals: { entries: COUNT, sessions: COUNT } })
      if (format === 'csv') expect(csvRows(all.stdout)).toHaveLength(COUNT)
      else expect(JSON.parse(all.stdout).receipts).toHaveLength(COUNT)
    }
    const five = await runCli(['receipts', '--export', 'csv', '--limit', '5', '--data-dir', dataDir])
    expect(csvRows(five.stdout)).toHaveLength(5)
    // newest first
    expect(csvRows(five.stdout)[0]).toMatch(new RegExp(`^s-${COUNT - 1},`))
  })

  it('a reader that stops early (| head) ends the command quietly: exit 0, no EPIPE stack trace', async () => {
    const child = spawn(process.execPath, [CLI, 'receipts', '--export', 'csv', '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', d => { stderr += d })
    // the first chunk, then the pipe closes, as head -1 does; the export is far longer than a pipe holds
    await new Promise<void>(resolve => child.stdout.once('data', () => resolve()))
    child.stdout.destroy()
    const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
    expect(stderr).toBe('')
    expect(code).toBe(0)
  })

  it('output it cannot write (a full disk) is one line and exit 1, not a stack trace', async () => {
    const { openSync, closeSync, existsSync } = await import('node:fs')
    if (!existsSync('/dev/full')) return
    const full = openSync('/dev/full', 'w')
    try {
      const child = spawn(process.execPath, [CLI, 'receipts', '--export', 'csv', '--data-dir', dataDir], { stdio: ['ignore', full, 'pipe'] })
      let stderr = ''
      child.stderr!.on('data', d => { stderr += d })
      const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
      expect(stderr).toBe('spareband: cannot write the output: the disk is full (ENOSPC); what was written is incomplete\n')
      expect(code).toBe(1)
    } finally {
      closeSync(full)
    }
  })

  it('the listing shows the newest 1000 by default and says there may be more', async () => {
    expect(await runCliJson(['receipts', '--json', '--data-dir', dataDir])).toHaveLength(1000)
    expect(await runCliJson(['receipts', '--json', '--limit', '1001', '--data-dir', dataDir])).toHaveLength(COUNT)
    const table = await runCli(['receipts', '--data-dir', dataDir])
    expect(table.stdout).toContain('1000 receipt(s), the newest; there may be more')
    const small = await runCli(['receipts', '--limit', '2000', '--data-dir', dataDir])
    expect(small.stdout.trimEnd().split('\n').at(-1)).toBe(`${COUNT} receipt(s)`)
  })

  it('a bad --limit is a usage error (exit 2) before anything is asked of the node', async () => {
    for (const limit of ['abc', '0', '-3', '1.5', '1e30']) {
      for (const args of [['receipts'], ['receipts', '--export', 'csv']]) {
        const r = await runCli([...args, '--limit', limit, '--data-dir', dataDir])
        expect(r.code, `${args.join(' ')} --limit ${limit}`).toBe(2)
        expect(r.stderr).toContain(`"${limit}" is not a positive integer`)
        expect(r.stdout).toBe('')
      }
    }
  })

  it('the API answers a bad limit with 400 and a clear message, not 500 or a silent default', async () => {
    for (const limit of ['1.5', '1e30', 'abc', '0', '-3']) {
      for (const exp of ['', '&export=csv']) {
        await expect(callApi(dataDir, `/v1/receipts?limit=${encodeURIComponent(limit)}${exp}`)).rejects.toThrow(`/v1/receipts?limit=${encodeURIComponent(limit)}${exp}: 400 limit "${limit}" is not a positive integer`)
      }
    }
  })
})

describe('balance and receipts when no node runs: read from ledger.db', () => {
  // the difficulty NodeProcess starts nodes with: the allowance is judged against it
  const env = { SPAREBAND_POW_DIFFICULTY: '8' }
  let dataDir: string

  beforeAll(async () => {
    ({ dataDir } = await dataDirWithLedger(3))
  })

  /** What each command prints, with its exit code; nothing on stdout when it fails. */
  async function outputs (): Promise<Record<string, { code: number | null, stdout: string, stderr: string }>> {
    const run = async (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> => runCli([...args, '--data-dir', dataDir], { env })
    return {
      balance: await run(['balance', '--json']),
      balanceText: await run(['balance']),
      receipts: await run(['receipts', '--json']),
      receiptsText: await run(['receipts']),
      csv: await run(['receipts', '--export', 'csv']),
      json: await run(['receipts', '--export', 'json'])
    }
  }

  it('prints what the running node printed, but for pending, which is unknown; and says it read the file', async () => {
    const node = new NodeProcess(dataDir, LOCAL)
    procs.push(node)
    await node.ready()
    // the node solves its proof of work once, then records it in the ledger
    await waitFor(async () => (await runCliJson(['balance', '--json', '--data-dir', dataDir])).proofOfWork.solved, { what: 'the proof of work' })
    const online = await outputs()
    expect((await node.stop()).code).toBe(0)
    const ledgerBefore = await readFile(join(dataDir, 'ledger.db'))
    const offline = await outputs()

    for (const [name, r] of Object.entries(offline)) {
      expect(r.code, `${name}: ${r.stderr}`).toBe(0)
      expect(r.stderr, name).toBe(`spareband: no node is running for ${dataDir}: read ${join(dataDir, 'ledger.db')} directly\n`)
      expect(online[name].stderr, name).toBe('')
    }
    for (const name of ['receipts', 'receiptsText', 'csv', 'json']) expect(offline[name].stdout, name).toBe(online[name].stdout)
    const onlineBalance = JSON.parse(online.balance.stdout)
    const offlineBalance = JSON.parse(offline.balance.stdout)
    expect(onlineBalance.pending).toEqual({ carriedUnsignedBytes: 0, usedUnsignedBytes: 0, holds: 0, forgivenBytes: 0, receiptsRefused: 0 })
    expect(offlineBalance).toEqual({ ...onlineBalance, pending: null })
    expect(Number(offlineBalance.earned)).toBeGreaterThan(0)
    expect(offlineBalance.receipts).toBe(3)
    expect(offlineBalance.outOfCredit).toBeNull()
    // with a stop above its balance, balance says the node is out of credit, and what it can do
    const stopped = await runCli(['balance', '--data-dir', dataDir], { env: { ...env, SPAREBAND_STOP_AT_BALANCE: '1000' } })
    expect(stopped.code, stopped.stderr).toBe(0)
    expect(stopped.stdout).toMatch(/^outOfCredit\s+out of credit: balance [0-9.]+ \(allowance [0-9.]+ \+ earned [0-9.]+ - spent [0-9.]+\); this node opens no tunnel \(HTTP 402, SOCKS5 0x02\) and ends its open ones while its balance is not above accounting\.stop_at_balance \(1000\), and exits would still carry it \(at their default credit limit of 0\): the stop is its own; it earns credit as an exit when others route traffic through it$/m)
    // the same stop from a config file the node runs with (--config), as the README says
    const configFile = join(await tempDir('sb-offline-config-'), 'node.toml')
    await writeFile(configFile, '[accounting]\nstop_at_balance = 1000\n')
    const fromConfig = await runCli(['balance', '--data-dir', dataDir, '--config', configFile], { env })
    expect(fromConfig.code, fromConfig.stderr).toBe(0)
    expect(fromConfig.stdout).toMatch(/^outOfCredit\s+out of credit: .*accounting\.stop_at_balance \(1000\)/m)
    const receiptsFromConfig = await runCli(['receipts', '--data-dir', dataDir, '--config', configFile], { env })
    expect(receiptsFromConfig.code, receiptsFromConfig.stderr).toBe(0)
    const missing = await runCli(['balance', '--data-dir', dataDir, '--config', join(configFile, 'nope.toml')], { env })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('nope.toml')
    // the readable form: the same lines, pending says it is unknown instead of 0
    // (the key column is as wide as the longest key, which differs)
    const lines = (text: string): string[] => text.trimEnd().split('\n').map(l => l.replace(/\s+/, ' '))
    expect(lines(offline.balanceText.stdout).filter(l => !l.startsWith('pending'))).toEqual(lines(online.balanceText.stdout).filter(l => !l.startsWith('pending')))
    expect(lines(online.balanceText.stdout).filter(l => l.startsWith('pending'))).toHaveLength(5)
    expect(lines(offline.balanceText.stdout).filter(l => l.startsWith('pending'))).toEqual([expect.stringMatching(/^pending unknown: only a running node knows/)])
    const file = join(await tempDir('sb-offline-'), 'r.csv')
    await writeFile(file, offline.csv.stdout)
    expect((await runCli(['verify', file])).code).toBe(0)
    // read-only: the ledger is as the node left it
    expect(await readFile(join(dataDir, 'ledger.db'))).toEqual(ledgerBefore)
  })

  it('reads the ledger of a node that was killed, whose api.json no one answers', async () => {
    const node = new NodeProcess(dataDir, LOCAL)
    procs.push(node)
    await node.ready()
    const online = await runCliJson(['receipts', '--json', '--data-dir', dataDir])
    await node.kill() // SIGKILL: api.json stays behind
    expect((await stat(join(dataDir, 'api.json'))).isFile()).toBe(true)
    const r = await runCli(['receipts', '--json', '--data-dir', dataDir], { env })
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual(online)
    expect(r.stderr).toContain('no node is running')
    const b = await runCli(['balance', '--json', '--data-dir', dataDir], { env })
    expect(JSON.parse(b.stdout)).toMatchObject({ pending: null, receipts: 3 })
    // receipts the node had queued for its next write when it was killed: not in the ledger, and said so
    const pendingFile = join(dataDir, 'ledger.db.pending')
    const { PendingJournal } = await import('../../src/accounting/pending-journal.ts')
    const { journal } = PendingJournal.open(pendingFile)
    try {
      journal.append(Uint8Array.of(1, 2, 3))
      journal.append(Uint8Array.of(4, 5, 6))
    } finally {
      journal.close()
    }
    try {
      const withPending = await runCli(['balance', '--data-dir', dataDir], { env })
      expect(withPending.code, withPending.stderr).toBe(0)
      expect(withPending.stderr).toContain(`spareband: up to 2 countersigned receipts in ${join(dataDir, 'ledger.db')}.pending are not in the ledger yet, and not counted here (the node stopped before its last write; it writes them when it next starts)\n`)
    } finally {
      await rm(pendingFile, { force: true })
    }
  })

  it('reads the ledger of a node that runs without a control API (an app\'s), and says it is running', async () => {
    const { createSparebandNode } = await import('../../src/index.ts')
    const node = await createSparebandNode({ dataDir, controlApi: false, config: { listen: ['/ip4/127.0.0.1/tcp/0'], proxy: { enabled: false }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } } })
    await node.start()
    try {
      const r = await runCli(['balance', '--json', '--data-dir', dataDir], { env })
      expect(r.code, r.stderr).toBe(0)
      expect(JSON.parse(r.stdout)).toMatchObject({ pending: null, receipts: 3 })
      expect(r.stderr).toBe(`spareband: the node running for ${dataDir} (pid ${process.pid}) has no control API to ask: read ${join(dataDir, 'ledger.db')} directly\n`)
    } finally {
      await node.stop()
    }
  })

  it('with no ledger either, or one that is not a ledger, fails with one clear line', async () => {
    const empty = await tempDir('sb-no-ledger-')
    await runCliJson(['init', '--data-dir', empty, '--json'])
    for (const args of [['balance'], ['receipts'], ['receipts', '--export', 'csv']]) {
      const r = await runCli([...args, '--data-dir', empty])
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stdout).toBe('')
      expect(r.stderr).toBe(`spareband: no node is running for ${empty}, and it has no ledger (${join(empty, 'ledger.db')}) to read instead; a node makes one when it first starts: "spareband start --data-dir ${empty}"\n`)
    }
    await writeFile(join(empty, 'ledger.db'), 'not a database\n')
    const r = await runCli(['balance', '--data-dir', empty])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^spareband: .*ledger\.db is not an SQLite database, so not a spareband ledger\./)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(await readFile(join(empty, 'ledger.db'), 'utf8')).toBe('not a database\n')
  })
})

describe('a node without accounting', () => {
  it('balance and receipts say it keeps none (they gave "/v1/balance: 404 no such endpoint")', async () => {
    const dataDir = await tempDir('sb-acct-off-')
    await createIdentity(dataDir)
    await writeFile(join(dataDir, 'config.toml'), '[accounting]\nenabled = false\n')
    const node = new NodeProcess(dataDir, [...LOCAL, '--no-supply'])
    procs.push(node)
    await node.ready()
    for (const args of [['balance'], ['receipts'], ['receipts', '--json'], ['receipts', '--export', 'csv']]) {
      const r = await runCli([...args, '--data-dir', dataDir])
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stderr, args.join(' ')).toBe(`spareband: the node running for ${dataDir} keeps no accounting (accounting.enabled = false): it has no balance and no receipts to show\n`)
    }
    await node.stop()
  })
})
