import { callApi } from '../api-client.ts'
import { formatTable, printJson } from '../output.ts'
import { parseRegionArg } from '../config-from-flags.ts'
import type { ProviderRow } from '../../routing/routing-selector.ts'
import type { Command } from 'commander'

export function registerProviders (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('providers')
    .description('list the exits of a region found in the DHT, best first')
    .requiredOption('--region <region>', 'region, e.g. de or us-ca', parseRegionArg)
    .option('--json', 'print JSON')
    .action(async (opts, cmd: Command) => {
      const rows = await callApi<ProviderRow[]>(dataDirOf(cmd), `/v1/providers?region=${encodeURIComponent(opts.region)}`)
      if (opts.json === true) printJson(rows)
      else {
        // OK/FAILED: this node's attempts through it, fading with a one-hour half-life: why a score is low
        process.stdout.write(formatTable(['PEER', 'REGION', 'CAPACITY Mbps', 'LOAD', 'PRICE/GB', 'SCORE', 'REPUTATION', 'RTT ms', 'OK/FAILED', 'REACH', 'REGION CHECK', 'YOUR TUNNELS'],
          rows.map(r => [r.peerId, r.region, r.capacityMbps, r.load.toFixed(2), r.pricePerGb, r.score, r.reputation, r.rttMs, `${r.attempts.succeeded}/${r.attempts.failed}`, r.reachability, r.verified, r.ownTunnels])))
        process.stdout.write(`${rows.length} exit(s) in ${opts.region}\n`)
      }
    })
}
