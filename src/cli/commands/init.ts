import { writeFile, access } from 'node:fs/promises'
import { join } from 'node:path'
import { createIdentity } from '../../node/identity.ts'
import { dataDirOwner } from '../../node/data-dir-lock.ts'
import { isValidRegion, normalizeRegion, subdivisionProblem } from '../../routing/regions.ts'
import { UsageError } from '../errors.ts'
import { printJson } from '../output.ts'
import type { Command } from 'commander'

/**
 * The commented config.toml init writes: every setting there is, each
 * commented out at its default (region and default_region, unset by
 * default, show an example; the proxy credentials, unset too, are told of
 * in words).
 */
export const CONFIG_TEMPLATE = (region?: string): string => `# spareband node configuration. Every key is optional and every key is here
# (the proxy credentials in words, under [proxy]): a commented key shows its
# default (region and default_region, unset by default, show an example).
# Environment variables (SPAREBAND_*) and flags override this file;
# \`spareband init --print-config\` prints it again.
${region != null ? `region = "${region}"` : '# region = "de"            # ISO 3166-1 alpha-2, optionally -subdivision ("us-ca")'}
# listen = ["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001", "/ip4/0.0.0.0/udp/4001/webrtc-direct", "/p2p-circuit"]
# announce = []               # addresses to announce instead of the listen addresses

# [api]
# host = "127.0.0.1"          # control API and dashboard; keep it on loopback
# port = 7070                 # 0 = any free port

# [proxy]
# enabled = true
# host = "127.0.0.1"          # beyond loopback only with credentials: set password = "...",
#                             # and username = "..." to make clients give it too
# socks_port = 1080
# http_port = 3128
# default_region = "de"       # for requests whose user name names no region
# warm_streams = 8            # tunnel streams kept open ahead of need per exit; 0 = off

# [exit]                      # what other members may do through this node
# enabled = true              # false: no exit at all (--no-supply)
# capacity_mbps = 100         # advertised; download_mbps caps what is claimed
# price_per_gb = 1            # credits per GB (10^9 bytes), advertised
# allowed_ports = [80, 443]   # or ["reduced"], or ["80", "443", "8000-8100"]
# denied_cidrs = []           # more targets to refuse, e.g. ["203.0.113.0/24"]
# denied_domains = []         # e.g. ["example.com"]: it and every name under it
# allow_private_targets = false  # true only for a local testnet: lifts the address rules
# upload_mbps = 0             # rate caps, all tunnels together; 0 = unlimited
# download_mbps = 0           # targets to consumers
# per_consumer_mbps = 0       # rate cap per consumer, each direction; 0 = unlimited
# max_tunnels = 1024          # open or being set up at once, all consumers together
# max_tunnels_per_consumer = 256
# daily_quota_gb = 0          # data per local day / month, both directions, GB; 0 = none
# monthly_quota_gb = 0
# schedule = "always"         # e.g. "mon-fri 00:00-07:00, sat-sun all"
# idle_timeout_seconds = 300  # idle tunnels are closed
# connect_timeout_seconds = 10  # for the connect to a target

# [accounting]
# enabled = true
# stop_at_balance = 0         # as a consumer, open no tunnel (and end open ones) while your balance is not above this
# credit_limit = 0            # as an exit, refuse consumers whose balance is below this
# allowance = 1               # credits a new identity starts with, once its proof of work is seen
# pow_difficulty = 20         # bits of that proof of work
# receipt_interval_mb = 1     # a receipt every this many MiB (2^20 bytes) carried, or
# receipt_interval_seconds = 5  # this often while there is traffic
# unsigned_threshold_mb = 4   # as an exit, hold a consumer's traffic past this many MiB unsigned
# publish_interval_seconds = 60  # gossip a long session's newest receipt this often
# gossip_retention_days = 30  # keep others' receipts this long after their last; 0 = for ever
# reputation_interval_seconds = 600  # report on the exits you used this often; 0 = never

# [relay]                     # carrying other members' tunnels to exits behind NAT
# enabled = "auto"            # true, false, or "auto": while this node has a public address
# max_reservations = 32
# data_limit_mb = 1024        # MiB per relayed connection; 0 = no limit
# duration_limit_seconds = 3600

# Behind NAT, an exit is reached through a relay: "/p2p-circuit" in listen (the default)
# finds relays by itself; to name one, add "<relay multiaddr>/p2p-circuit" to the
# top-level listen list (the node redials that relay whenever it goes).
# [network]                   # name, dht_protocol and the topics come from --network
# bootstrap = []              # multiaddrs ending in /p2p/<peer id>
# dht_server = "auto"         # true, false, or "auto": a DHT server while this node has a public address
# local_testnet = false       # true for machines that meet at private addresses (one machine, a LAN)
# redial_max_seconds = 60     # longest wait between redials of a lost relay or bootstrap peer
# stun_servers = "auto"       # STUN servers WebRTC asks for this node's public address: "auto" is
#                             # libp2p's public ones (none in a local testnet); [] asks none
# relay_reservations = 2      # relays "/p2p-circuit" reserves on (1-8): behind NAT, consumers reach
#                             # this exit through another at once when one relay dies
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
        if (!isValidRegion(region)) {
          const subdivision = subdivisionProblem(region)
          throw new UsageError(`--region "${opts.region}" is ${subdivision != null ? `not a region: ${subdivision}` : 'not an ISO 3166-1 alpha-2 country code, optionally with a subdivision (e.g. de, us-ca)'}`)
        }
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
        // 0600: the operator may put proxy.password in it
        await writeFile(configFile, CONFIG_TEMPLATE(region), { mode: 0o600 })
        wroteConfig = true
      }
      // an existing config.toml is never rewritten, so a --region given now is not in it: say so in both modes
      const notes = region != null && !wroteConfig ? [`config.toml already existed: set region = "${region}" in it yourself`] : []
      const result = { peerId: identity.peerId.toString(), dataDir, identityFile: join(dataDir, 'identity.key'), configFile, wroteConfig, region, replaced: identity.replaced, notes }
      if (opts.json === true) printJson(result)
      else {
        process.stdout.write(`peer id    ${result.peerId}\nidentity   ${result.identityFile}\nconfig     ${configFile}${wroteConfig ? ' (created)' : ' (kept)'}\n`)
        if (identity.replaced != null) process.stdout.write(`old key    ${identity.replaced.file} (${identity.replaced.peerId != null ? `peer ${identity.replaced.peerId}` : 'not a valid key'}; kept, not used)\n`)
        for (const note of notes) process.stdout.write(`note       ${note}\n`)
      }
    })
}
