import { callApi } from '../api-client.ts'
import { DEFAULT_QUERY_TIMEOUT_MS } from '../../routing/discovery.ts'
import { second } from '../../constants.ts'
import { formatTable, printJson } from '../output.ts'
import { parseRegionArg } from '../config-from-flags.ts'
import { regionMatches } from '../../routing/regions.ts'
import type { ProviderRow } from '../../routing/routing-selector.ts'
import type { Command } from 'commander'

export function registerProviders (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('providers')
    .description('list the exits of a region, best first: those found in the DHT and those known from a connection')
    .requiredOption('--region <region>', 'region, e.g. de or us-ca', parseRegionArg)
    .option('--json', 'print JSON')
    .action(async (opts, cmd: Command) => {
      // the node may walk the DHT for the region first, for up to its lookup timeout: the CLI waits that out
      const rows = await callApi<ProviderRow[]>(dataDirOf(cmd), `/v1/providers?region=${encodeURIComponent(opts.region)}`, { timeoutMs: DEFAULT_QUERY_TIMEOUT_MS + 10 * second })
      if (opts.json === true) printJson(rows)
      else {
        // OK/FAILED: this node's attempts through it, fading with a one-hour half-life: why a score is low
        // MEASURED: the bandwidth this node got through it, against the CAPACITY its ad claims
        process.stdout.write(formatTable(['PEER', 'REGION', 'CAPACITY Mbps', 'MEASURED Mbps', 'LOAD', 'PRICE/GB', 'SCORE', 'REPUTATION', 'RTT ms', 'OK/FAILED', 'REACH', 'REGION CHECK', 'YOUR TUNNELS', 'FROM'],
          rows.map(r => [r.peerId, r.region, r.capacityMbps, r.attempts.bandwidth == null ? null : Math.round(r.attempts.bandwidth * 8 / 1e5) / 10, loadCell(r.load), r.pricePerGb, r.score, r.reputation, r.rttMs, `${r.attempts.succeeded}/${r.attempts.failed}`, r.askedLast ? `${r.reachability}, gone` : r.reachability, r.verified, r.ownTunnels, r.source])))
        process.stdout.write(`${rows.length} exit(s) in ${opts.region}\n`)
        if (rows.some(r => r.source === 'identify')) process.stdout.write('FROM identify: known from a connection only, no capacity ad found in the DHT yet: neutral figures, ranked behind advertised exits, used all the same\n')
        if (rows.some(r => r.askedLast)) process.stdout.write('REACH gone: found gone lately (could not be dialled, or did not answer a ping), so requests ask it after every other until a tunnel through it works; its ad may stay in the DHT for hours\n')
        if (rows.some(r => r.load >= 1)) process.stdout.write('LOAD closed: the exit\'s ad says it takes no new tunnels now (at its tunnel limit, paused, outside its share schedule or out of data quota), so it scores low\n')
        // the node's own exit is never listed: it does not carry its own traffic
        const own = await callApi<{ region?: string, exit?: { enabled?: boolean } }>(dataDirOf(cmd), '/v1/status').catch(() => undefined)
        if (own?.exit?.enabled === true && own.region != null && regionMatches(own.region, opts.region)) process.stdout.write(`(this node's own exit, in ${own.region}, is not listed: it does not carry this node's traffic)\n`)
      }
    })
}

/** An ad's load, or that it says the exit takes nothing (load 1), which a bare 1.00 did not tell. */
function loadCell (load: number): string {
  return load >= 1 ? 'closed' : load.toFixed(2)
}
