import { writeFile, access } from 'node:fs/promises'
import { join } from 'node:path'
import { createIdentity } from '../../node/identity.ts'
import { dataDirOwner } from '../../node/data-dir-lock.ts'
import { isValidRegion, normalizeRegion } from '../../routing/regions.ts'
import { UsageError } from '../errors.ts'
import { printJson } from '../output.ts'
import type { Command } from 'commander'

/** The commented config.toml init writes: uncommented, each key is its default (region and default_region are examples). */
export const CONFIG_TEMPLATE = (region?: string): string => `# spareband node configuration. Every key is optional: a commented key shows
# its default; the README's "Data directory and configuration" has them all.
# Environment variables (SPAREBAND_*) and flags override this file.
${region != null ? `region = "${region}"` : '# region = "de"            # ISO 3166-1 alpha-2, optionally -subdivision ("us-ca")'}

# [api]
# port = 7070                 # control API and dashboard on 127.0.0.1; 0 = any free port

# [proxy]
# socks_port = 1080
# http_port = 3128
# default_region = "de"

# [exit]                      # what other members may do through this node
# enabled = true              # false: no exit at all (--no-supply)
# capacity_mbps = 100         # advertised
# price_per_gb = 1            # credits per GB (10^9 bytes), advertised
# allowed_ports = [80, 443]   # or ["reduced"], or ["80", "443", "8000-8100"]
# denied_cidrs = []           # more targets to refuse, e.g. ["203.0.113.0/24"]
# denied_domains = []         # e.g. ["example.com"]: it and every name under it
# upload_mbps = 0             # rate caps, all tunnels together; 0 = unlimited
# download_mbps = 0
# per_consumer_mbps = 0       # rate cap per consumer, each direction; 0 = unlimited
# max_tunnels = 1024          # open or being set up at once, all consumers together
# max_tunnels_per_consumer = 256
# daily_quota_gb = 0          # data per local day / month, both directions, GB; 0 = none
# monthly_quota_gb = 0
# schedule = "always"         # e.g. "mon-fri 00:00-07:00, sat-sun all"
# idle_timeout_seconds = 300  # idle tunnels are closed

# [accounting]
# stop_at_balance = 0         # as a consumer, open no tunnel (and end open ones) while your balance is not above this
# gossip_retention_days = 30  # keep others' receipts this long after their last; 0 = for ever
# reputation_interval_seconds = 600  # report on the exits you used this often; 0 = never

# Behind NAT, an exit is reached through a relay: add "<relay multiaddr>/p2p-circuit"
# to the top-level listen list (the node redials that relay whenever it goes).
# [network]
# bootstrap = []              # multiaddrs ending in /p2p/<peer id>
# redial_max_seconds = 60     # longest wait between redials of a lost relay or bootstrap peer
`

export function registerInit (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('init')
    .description('create the node identity (identity.key) and a config.toml in the data directory')
    .option('--region <region>', 'region this node exits traffic in, e.g. de or us-ca')
    .option('--force', 'replace an existing identity; the old key is kept as identity.key.<peer id>.bak. Refused while ledger.db holds the old identity\'s credits (move identity.key and ledger.db aside together to start over)')
    .option('--json', 'print the result as JSON')
    .option('--print-config', 'print the commented config.toml template (with --region) and change nothing: for a data directory whose config.toml is gone, or to compare with yours')
    .action(async (opts, cmd: Command) => {
      const dataDir = dataDirOf(cmd)
      let region: string | undefined
      if (opts.region != null) {
        region = normalizeRegion(opts.region)
        if (!isValidRegion(region)) throw new UsageError(`--region "${opts.region}" is not an ISO 3166-1 alpha-2 country code, optionally with a subdivision (e.g. de, us-ca)`)
      }
      if (opts.printConfig === true) {
        if (opts.force === true || opts.json === true) throw new UsageError('--print-config prints the template and changes nothing: it takes --region, not --force or --json')
        process.stdout.write(CONFIG_TEMPLATE(region))
        return
      }
      const owner = opts.force === true ? dataDirOwner(dataDir) : undefined
      // the running node keeps the old key; the next start would come back as another peer, its receipts signed by a stranger
      if (owner != null) throw new UsageError(`a node runs on ${dataDir} (pid ${owner}): stop it before replacing its identity with --force`)
      const identity = await createIdentity(dataDir, { force: opts.force === true })
      const configFile = join(dataDir, 'config.toml')
      let wroteConfig = false
      try {
        await access(configFile)
      } catch {
        await writeFile(configFile, CONFIG_TEMPLATE(region), { mode: 0o644 })
        wroteConfig = true
      }
      const result = { peerId: identity.peerId.toString(), dataDir, identityFile: join(dataDir, 'identity.key'), configFile, wroteConfig, region, replaced: identity.replaced }
      if (opts.json === true) printJson(result)
      else {
        process.stdout.write(`peer id    ${result.peerId}\nidentity   ${result.identityFile}\nconfig     ${configFile}${wroteConfig ? ' (created)' : ' (kept)'}\n`)
        if (identity.replaced != null) process.stdout.write(`old key    ${identity.replaced.file} (${identity.replaced.peerId != null ? `peer ${identity.replaced.peerId}` : 'not a valid key'}; kept, not used)\n`)
        if (region != null && !wroteConfig) process.stdout.write(`note       config.toml already existed: set region = "${region}" in it yourself\n`)
      }
    })
}
