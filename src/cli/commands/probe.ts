import { readFile } from 'node:fs/promises'
import { InvalidArgumentError } from 'commander'
import { callApi } from '../api-client.ts'
import { decimalNumber } from '../../node/config.ts'
import { formatKeyValues, printJson } from '../output.ts'
import { UsageError, describeFsError } from '../errors.ts'
import { parseRegionArg } from '../config-from-flags.ts'
import { DEFAULT_PROBE_TIMEOUT_MS, MAX_PROBE_TIMEOUT_MS, ProbeInputError, parseProbeUrl } from '../../relay/probe.ts'
import { isValidSessionId } from '../../relay/targeting.ts'
import type { ProbeResult } from '../../relay/probe.ts'
import type { Command } from 'commander'

function parseCount (value: string): number {
  const n = decimalNumber(value) ?? NaN
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new InvalidArgumentError(`"${value}" is not a whole number of probes from 1 to 10000`)
  return n
}

function parseSeconds (value: string): number {
  const n = decimalNumber(value) ?? NaN
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > MAX_PROBE_TIMEOUT_MS / 1000) throw new InvalidArgumentError(`"${value}" is not a positive number of seconds up to ${MAX_PROBE_TIMEOUT_MS / 1000}`)
  return n
}

/** Checked here, with the proxy's rule for session ids: a bad one is a usage error (exit 2), not the node's 400. */
function parseSession (value: string): string {
  if (!isValidSessionId(value)) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a session id: 1 to 64 letters, digits, '_', '.' or '-'.`)
  return value
}

const ms = (n: number | undefined): string | undefined => n == null ? undefined : `${n.toFixed(1)} ms`

/** The nearest-rank percentile of sorted values. */
function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

export interface Spread { min: number, p50: number, p90: number, p99: number, max: number }

function spreadOf (values: number[]): Spread | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  return { min: sorted[0], p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] }
}

/** What `--count N` prints: each probe, and the spread of the phases over those that succeeded. */
export function summarize (results: ProbeResult[]): { count: number, succeeded: number, failures: Record<string, number>, exits: Record<string, number>, timings: Record<string, Spread | undefined>, results: ProbeResult[] } {
  const ok = results.filter((r): r is Extract<ProbeResult, { ok: true }> => r.ok)
  const failures: Record<string, number> = {}
  const exits: Record<string, number> = {}
  for (const r of results) {
    if (!r.ok) failures[r.failure] = (failures[r.failure] ?? 0) + 1
    if (r.exit != null) exits[r.exit] = (exits[r.exit] ?? 0) + 1
  }
  return {
    count: results.length,
    succeeded: ok.length,
    failures,
    exits,
    timings: {
      tunnelMs: spreadOf(ok.map(r => r.timings.tunnelMs)),
      tlsMs: spreadOf(ok.flatMap(r => r.timings.tlsMs ?? [])),
      firstByteMs: spreadOf(ok.map(r => r.timings.firstByteMs)),
      totalMs: spreadOf(ok.map(r => r.timings.totalMs))
    },
    results
  }
}

function oneLine (i: number, r: ProbeResult): string {
  if (!r.ok) return `#${i + 1}  failed  ${r.failure}: ${r.error}${r.exit != null ? `  via ${r.exit}` : ''}\n`
  return `#${i + 1}  ${r.status}  first byte ${ms(r.timings.firstByteMs)}  total ${ms(r.timings.totalMs)}  ${r.bytes} bytes  via ${r.exit}\n`
}

/** What a person reads: the outcome first, then the timings from the start of the probe. */
function describe (r: ProbeResult): Record<string, unknown> {
  if (!r.ok) {
    return { url: r.url, region: r.region ?? 'any', exit: r.exit, failed: `${r.failure}: ${r.error}`, timings: { tunnel: ms(r.timings.tunnelMs), tls: ms(r.timings.tlsMs) } }
  }
  return {
    url: r.url,
    region: r.region ?? 'any',
    exit: r.exit,
    status: `HTTP/${r.httpVersion} ${r.status} ${r.statusText}`,
    body: `${r.bytes} bytes, sha256 ${r.sha256}`,
    tls: r.tls == null ? undefined : `${r.tls.protocol} ${r.tls.cipher}${r.tls.authorized ? '' : ` (not verified: ${r.tls.authorizationError ?? 'unknown'})`}`,
    timings: { tunnel: ms(r.timings.tunnelMs), tls: ms(r.timings.tlsMs), 'first byte': ms(r.timings.firstByteMs), total: ms(r.timings.totalMs) },
    headers: r.headers
  }
}

async function readCa (file: string): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err: any) {
    throw new UsageError(`--ca ${file}: cannot read it: ${describeFsError(err)}`)
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--ca ${file}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)`)
  return text
}

export function registerProbe (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('probe')
    .description('fetch a URL through an exit of a region, through the running node, and time it (exit 1 when it fails)')
    .argument('<url>', 'an http:// or https:// URL; the exit resolves the name')
    .option('--region <region>', 'the exit\'s region, e.g. de or us-ca (default: the proxy\'s default region, else any)', parseRegionArg)
    .option('--session <id>', 'the same exit as other tunnels of this session id (1 to 64 letters, digits, _ . -)', parseSession)
    .option('--timeout <seconds>', `give up after this long (at most ${MAX_PROBE_TIMEOUT_MS / 1000})`, parseSeconds, DEFAULT_PROBE_TIMEOUT_MS / 1000)
    .option('--insecure', 'accept a TLS certificate that does not check out (a testnet origin\'s own)')
    .option('--ca <file>', 'trust the PEM certificates in this file instead of the usual CAs (a testnet\'s own CA)')
    .option('--count <n>', 'probe this many times, one after the other, and show the spread of the timings', parseCount, 1)
    .option('--json', 'print JSON')
    .action(async (url: string, opts, cmd: Command) => {
      try {
        parseProbeUrl(url)
      } catch (err) {
        if (err instanceof ProbeInputError) throw new UsageError(err.message)
        throw err
      }
      const timeoutMs = Math.round(opts.timeout * 1000)
      const ca = opts.ca == null ? undefined : await readCa(opts.ca)
      const once = async (): Promise<ProbeResult> => callApi<ProbeResult>(dataDirOf(cmd), '/v1/probe', {
        method: 'POST',
        body: { url, region: opts.region, session: opts.session, timeoutMs, insecure: opts.insecure === true, ca },
        // the node gives up at timeoutMs and still answers
        timeoutMs: timeoutMs + 10_000
      })
      if (opts.count === 1) {
        const result = await once()
        if (opts.json === true) printJson(result)
        else process.stdout.write(formatKeyValues(describe(result)))
        if (!result.ok) process.exitCode = 1
        return
      }
      const results: ProbeResult[] = []
      for (let i = 0; i < opts.count; i++) {
        const r = await once()
        results.push(r)
        if (opts.json !== true) process.stdout.write(oneLine(i, r))
      }
      const summary = summarize(results)
      if (opts.json === true) printJson(summary)
      else {
        const { results: _, ...rest } = summary
        const shown: Record<string, unknown> = { ...rest, timings: Object.fromEntries(Object.entries(rest.timings).filter(([, v]) => v != null).map(([k, v]) => [k, `min ${ms(v!.min)}, p50 ${ms(v!.p50)}, p90 ${ms(v!.p90)}, p99 ${ms(v!.p99)}, max ${ms(v!.max)}`])) }
        process.stdout.write(formatKeyValues(shown))
      }
      if (summary.succeeded < summary.count) process.exitCode = 1
    })
}
