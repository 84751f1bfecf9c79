import { InvalidArgumentError } from 'commander'
import { callApi } from '../api-client.ts'
import { formatKeyValues, printJson } from '../output.ts'
import { UsageError } from '../errors.ts'
import { DEFAULT_PROBE_TIMEOUT_MS, ProbeInputError, parseProbeUrl } from '../../relay/probe.ts'
import type { ProbeResult } from '../../relay/probe.ts'
import type { Command } from 'commander'

function parseSeconds (value: string): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`"${value}" is not a positive number of seconds`)
  return n
}

const ms = (n: number | undefined): string | undefined => n == null ? undefined : `${n.toFixed(1)} ms`

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

export function registerProbe (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('probe')
    .description('fetch a URL through an exit of a region, through the running node, and time it (exit 1 when it fails)')
    .argument('<url>', 'an http:// or https:// URL; the exit resolves the name')
    .option('--region <region>', 'the exit\'s region, e.g. de or us-ca (default: the proxy\'s default region, else any)')
    .option('--session <id>', 'the same exit as other tunnels of this session id')
    .option('--timeout <seconds>', 'give up after this long', parseSeconds, DEFAULT_PROBE_TIMEOUT_MS / 1000)
    .option('--insecure', 'accept a TLS certificate that does not check out (a testnet origin\'s own)')
    .option('--json', 'print JSON')
    .action(async (url: string, opts, cmd: Command) => {
      try {
        parseProbeUrl(url)
      } catch (err) {
        if (err instanceof ProbeInputError) throw new UsageError(err.message)
        throw err
      }
      const timeoutMs = Math.round(opts.timeout * 1000)
      const result = await callApi<ProbeResult>(dataDirOf(cmd), '/v1/probe', {
        method: 'POST',
        body: { url, region: opts.region, session: opts.session, timeoutMs, insecure: opts.insecure === true },
        // the node gives up at timeoutMs and still answers
        timeoutMs: timeoutMs + 10_000
      })
      if (opts.json === true) printJson(result)
      else process.stdout.write(formatKeyValues(describe(result)))
      if (!result.ok) process.exitCode = 1
    })
}
