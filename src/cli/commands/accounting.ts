import { readFile } from 'node:fs/promises'
import { InvalidArgumentError } from 'commander'
import { callApi } from '../api-client.ts'
import { formatKeyValues, formatTable, printJson } from '../output.ts'
import { UsageError } from '../errors.ts'
import { DEFAULT_RECEIPT_LIST_LIMIT, parseReceiptLimit } from '../../node/accounting-report.ts'
import type { Command } from 'commander'

/** commander's parser for --limit: a bad value is a usage error (exit 2), never a silent default. */
function parseLimitArg (value: string): number {
  try {
    return parseReceiptLimit(value)
  } catch (err: any) {
    throw new InvalidArgumentError(`${err.message}.`)
  }
}

export function registerAccounting (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('balance')
    .description('credits earned as an exit, spent as a consumer, the allowance and what is still unsigned')
    .option('--json', 'print JSON')
    .action(async (opts, cmd: Command) => {
      const b = await callApi(dataDirOf(cmd), '/v1/balance')
      if (opts.json === true) printJson(b)
      else process.stdout.write(formatKeyValues(b))
    })

  program.command('receipts')
    .description('list the countersigned receipts in the ledger, or export them')
    .option('--json', 'print JSON')
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
        const r = await callApi(dataDir, `/v1/receipts?${query}`)
        process.stdout.write(r.text)
        return
      }
      const rows = await callApi<any[]>(dataDir, `/v1/receipts?${query}`)
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
      let text: string
      try {
        text = await readFile(file, 'utf8')
      } catch (err: any) {
        throw new UsageError(`cannot read ${file}: ${err.code ?? err.message}`)
      }
      const { verifyExport } = await import('../../accounting/export.ts')
      const result = await verifyExport(text)
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
