import { once } from 'node:events'
import { createReadStream } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { InvalidArgumentError } from 'commander'
import { ApiStatusError, callApi, callApiStream } from '../api-client.ts'
import { resolveCliConfig } from '../config-from-flags.ts'
import { formatKeyValues, formatTable, printJson } from '../output.ts'
import { UsageError, describeFsError } from '../errors.ts'
import { NodeNotRunningError } from '../../errors.ts'
import { dataDirOwner } from '../../node/data-dir-lock.ts'
import { DEFAULT_RECEIPT_LIST_LIMIT, LEDGER_FILE, exportTextOfAnswer, parseReceiptLimit } from '../../node/accounting-report.ts'
import type { ReceiptsExport } from '../../node/accounting-report.ts'
import type { OfflineAccounting } from '../../node/offline-ledger.ts'
import type { Command } from 'commander'

/** The receipts route with `query`, and no bare "?" when there is none. */
function receiptsPath (query: URLSearchParams): string {
  const q = query.toString()
  return q === '' ? '/v1/receipts' : `/v1/receipts?${q}`
}

/** What `balance` shows for `pending` when it reads the ledger without a node. */
const PENDING_UNKNOWN = 'unknown: only a running node knows the bytes no receipt covers yet, and none answered'

/**
 * Asks the node running on the data directory; when none does (no api.json,
 * or it does not answer), reads its ledger.db directly, read-only, with the
 * settings the node would use (config.toml, environment), and says so on
 * stderr. `running` tells the caller which answered.
 */
async function fromNodeOrLedger<T> (cmd: Command, dataDir: string, online: string | (() => Promise<T>), offline: (a: OfflineAccounting) => unknown): Promise<{ value: T, running: boolean }> {
  try {
    return { value: typeof online === 'string' ? await callApi<T>(dataDir, online) : await online(), running: true }
  } catch (err) {
    // a node without accounting has no such routes: its 404 ("/v1/balance: 404 no such endpoint") told the operator nothing
    if (err instanceof ApiStatusError && err.status === 404 && /^\/v1\/(balance|receipts)\b/.test(err.path)) {
      throw new Error(`the node running for ${dataDir} keeps no accounting (accounting.enabled = false): it has no balance and no receipts to show`)
    }
    if (!(err instanceof NodeNotRunningError)) throw err
  }
  // loaded only here: node:sqlite and the ledger are not needed while a node answers
  const { openOfflineAccounting } = await import('../../node/offline-ledger.ts')
  const accounting = await openOfflineAccounting(dataDir, resolveCliConfig(cmd, dataDir).config)
  if (accounting == null) {
    throw new NodeNotRunningError(`no node is running for ${dataDir}, and it has no ledger (${join(dataDir, LEDGER_FILE)}) to read instead; a node makes one when it first starts: "spareband start --data-dir ${dataDir}"`)
  }
  try {
    const value = await offline(accounting) as T
    // a node that holds the directory without a control API to ask (starting, or an app's with controlApi: false)
    const owner = dataDirOwner(dataDir)
    const why = owner == null ? `no node is running for ${dataDir}` : `the node running for ${dataDir} (pid ${owner}) has no control API to ask`
    process.stderr.write(`spareband: ${why}: read ${accounting.file} directly\n`)
    if (accounting.pendingReceipts > 0) {
      // the journal is emptied just after a batch commits: a count read in between overstates, hence "up to"
      const n = accounting.pendingReceipts
      const when = owner == null ? 'the node stopped before its last write; it writes them when it next starts' : 'queued for the running node\'s next write, within a second'
      process.stderr.write(`spareband: up to ${n} countersigned receipt${n === 1 ? '' : 's'} in ${accounting.file}.pending ${n === 1 ? 'is' : 'are'} not in the ledger yet, and not counted here (${when})\n`)
    }
    return { value, running: false }
  } finally {
    accounting.close()
  }
}

/**
 * How long `receipts --export` waits for more of a running node's export
 * (it may take any time in all: about 10,000 receipts a second): the
 * node may first have to list some millions of receipt ids.
 */
const EXPORT_IDLE_TIMEOUT_MS = 60_000

/** How much of a file `verify` reads at a time. */
const VERIFY_CHUNK_BYTES = 256 * 1024

/** Writes to stdout, waiting whenever it is full (a slow pipe). */
async function writeChunks (chunks: Iterable<string> | AsyncIterable<string>): Promise<void> {
  for await (const chunk of chunks) {
    if (!process.stdout.write(chunk)) await once(process.stdout, 'drain')
  }
}

/** commander's parser for --limit: a bad value is a usage error (exit 2), never a silent default. */
function parseLimitArg (value: string): number {
  try {
    return parseReceiptLimit(value)
  } catch (err: any) {
    throw new InvalidArgumentError(`${err.message}.`)
  }
}

/** --config of the commands that read ledger.db themselves when no node runs (balance, receipts). */
const OFFLINE_CONFIG_HELP = 'with no node running: the config file the node runs with (default: <data-dir>/config.toml)'

export function registerAccounting (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('balance')
    .description('credits earned as an exit, spent as a consumer, the allowance and what is still unsigned (from ledger.db when no node runs)')
    .option('--json', 'print JSON')
    .option('--config <file>', OFFLINE_CONFIG_HELP)
    .action(async (opts, cmd: Command) => {
      const { value: b, running } = await fromNodeOrLedger<Record<string, unknown>>(cmd, dataDirOf(cmd), '/v1/balance', a => a.balance())
      // JSON: pending is null when no node runs (unknown, not 0)
      if (opts.json === true) printJson(b)
      else process.stdout.write(formatKeyValues(running ? b : { ...b, pending: PENDING_UNKNOWN }))
    })

  program.command('receipts')
    .description('list the countersigned receipts in the ledger, or export them (from ledger.db when no node runs)')
    .option('--json', 'print JSON')
    .option('--config <file>', OFFLINE_CONFIG_HELP)
    .option('--limit <n>', `at most this many, newest first (default: ${DEFAULT_RECEIPT_LIST_LIMIT} for the listing, all for --export)`, parseLimitArg)
    .option('--export <format>', 'write an export that "spareband verify" checks offline: csv or json')
    .action(async (opts, cmd: Command) => {
      const dataDir = dataDirOf(cmd)
      const limit: number | undefined = opts.limit
      const query = new URLSearchParams()
      // no limit: the node's default, which for an export is every receipt
      if (limit != null) query.set('limit', String(limit))
      if (opts.export != null) {
        if (opts.export !== 'csv' && opts.export !== 'json') throw new UsageError(`--export "${opts.export}" is not csv or json`)
        query.set('export', opts.export)
      }
      if (opts.export != null) {
        // written as it is made (from the ledger) or as it arrives (from the node): never held whole
        await fromNodeOrLedger<undefined>(cmd, dataDir, async () => {
          const answer = await callApiStream(dataDir, receiptsPath(query), { idleTimeoutMs: EXPORT_IDLE_TIMEOUT_MS })
          try {
            await writeChunks(exportTextOfAnswer(answer))
          } catch (err: any) {
            // what was written is a part of an export, which its totals make fail verify; say so
            throw new Error(`receipts --export: ${err.message}; the output is incomplete (and fails "spareband verify")`)
          }
          return undefined
        }, async a => {
          await writeChunks((a.receipts(Object.fromEntries(query)) as ReceiptsExport).chunks)
        })
        return
      }
      const { value } = await fromNodeOrLedger<any>(cmd, dataDir, receiptsPath(query), a => a.receipts(Object.fromEntries(query)))
      // bigints when read offline, decimal strings from the API: printJson and formatTable print both alike
      const rows: any[] = value
      if (opts.json === true) printJson(rows)
      else {
        process.stdout.write(formatTable(['SESSION', 'CONSUMER', 'EXIT', 'UP', 'DOWN', 'SEQ', 'COST', 'SOURCE'],
          rows.map(r => [r.sessionId, r.consumer.slice(-8), r.exit.slice(-8), r.bytesUp, r.bytesDown, r.seq, r.cost, r.source])))
        const capped = rows.length === (limit ?? DEFAULT_RECEIPT_LIST_LIMIT)
        process.stdout.write(`${rows.length} receipt(s)${capped ? `, the newest; there may be more (--limit N shows N, --export all)` : ''}\n`)
      }
    })

  program.command('verify')
    .description('check an exported receipts file offline: every signature, counters, totals')
    .argument('<file>', 'a file written by "spareband receipts --export csv|json"')
    .option('--json', 'print JSON')
    .action(async (file: string, opts) => {
      // read a chunk at a time: an export of a year of receipts need not fit in memory
      const { verifyExportStream } = await import('../../accounting/export.ts')
      let result: Awaited<ReturnType<typeof verifyExportStream>>
      try {
        // signatures are most of the work: every core checks them
        result = await verifyExportStream(createReadStream(file, { highWaterMark: VERIFY_CHUNK_BYTES }), { signatureThreads: availableParallelism() })
      } catch (err: any) {
        // the checking went wrong, not the file: exit 1 with the cause, not a usage error
        if (err?.name === 'SignatureThreadError') throw new Error(`${file}: not verified: ${err.message}`)
        throw new UsageError(`cannot read ${file}: ${describeFsError(err)}`)
      }
      if (result.ok) {
        const t = result.totals as any
        if (opts.json === true) printJson({ ok: true, format: result.format, entries: result.entries, totals: t })
        else process.stdout.write(`${file}: OK, ${result.entries} receipt(s) verified (${result.format})\n`)
        return
      }
      if (opts.json === true) printJson(result)
      // index 0: the file as a whole (empty, not an export, cut short, totals); no entry to blame
      else if (result.index === 0) process.stderr.write(`${file}: ${result.reason}\n`)
      else process.stderr.write(`${file}: entry ${result.index}${result.sessionId != null ? ` (session ${result.sessionId})` : ''} is bad: ${result.reason}\n`)
      process.exitCode = 1
    })
}
