/**
 * Turns `spareband start` flags into config: defaults < network definition
 * < config.toml < environment < flags. Only flags the user actually typed
 * count, so a flag's default never hides a value from the file.
 */

import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { InvalidArgumentError } from 'commander'
import { decimalNumber, defaultConfig, envLayer, layerFromKeys, readConfigFile, resolveConfig } from '../node/config.ts'
import { ConfigError } from '../errors.ts'
import { UsageError } from './errors.ts'
import { loadNetworkDefinition, networkLayer, shippedNetworksDir } from '../node/network-definition.ts'
import { isValidRegion, normalizeRegion, subdivisionProblem } from '../routing/regions.ts'
import type { Command } from 'commander'
import type { ConfigLayer, SparebandConfig } from '../node/config.ts'

/** flag attribute name (commander camelCase) -> config key */
export const FLAG_KEYS: Record<string, { key: string, flag: string, map?: (v: any) => unknown }> = {
  region: { key: 'region', flag: '--region' },
  listen: { key: 'listen', flag: '--listen' },
  announce: { key: 'announce', flag: '--announce' },
  bootstrap: { key: 'network.bootstrap', flag: '--bootstrap' },
  socksPort: { key: 'proxy.socks_port', flag: '--socks-port' },
  httpPort: { key: 'proxy.http_port', flag: '--http-port' },
  apiPort: { key: 'api.port', flag: '--api-port' },
  proxyHost: { key: 'proxy.host', flag: '--proxy-host' },
  defaultRegion: { key: 'proxy.default_region', flag: '--default-region' },
  supply: { key: 'exit.enabled', flag: '--no-supply' },
  relay: { key: 'relay.enabled', flag: '--no-relay' },
  capacityMbps: { key: 'exit.capacity_mbps', flag: '--capacity-mbps' },
  exitPorts: { key: 'exit.allowed_ports', flag: '--exit-ports', map: (v: string) => v.split(',') },
  allowPrivateTargets: { key: 'exit.allow_private_targets', flag: '--allow-private-targets' },
  schedule: { key: 'exit.schedule', flag: '--schedule' },
  uploadMbps: { key: 'exit.upload_mbps', flag: '--upload-mbps' },
  downloadMbps: { key: 'exit.download_mbps', flag: '--download-mbps' },
  perConsumerMbps: { key: 'exit.per_consumer_mbps', flag: '--per-consumer-mbps' },
  maxTunnels: { key: 'exit.max_tunnels', flag: '--max-tunnels' },
  maxTunnelsPerConsumer: { key: 'exit.max_tunnels_per_consumer', flag: '--max-tunnels-per-consumer' },
  dailyQuotaGb: { key: 'exit.daily_quota_gb', flag: '--daily-quota-gb' },
  monthlyQuotaGb: { key: 'exit.monthly_quota_gb', flag: '--monthly-quota-gb' },
  idleTimeout: { key: 'exit.idle_timeout_seconds', flag: '--idle-timeout' },
  gossipRetentionDays: { key: 'accounting.gossip_retention_days', flag: '--gossip-retention-days' }
}

export function parseNumberArg (value: string): number {
  const n = decimalNumber(value)
  if (n == null) throw new InvalidArgumentError(`"${value}" is not a number (write it in decimal, e.g. 16 or 2.5).`)
  return n
}

export function parsePortArg (value: string): number {
  const n = parseNumberArg(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`"${value}" is not a port (0-65535; 0 picks a free one).`)
  return n
}

/** A region flag of a command that asks the node (providers, probe): checked here, so a typo is a usage error (exit 2), not the node's 400. */
export function parseRegionArg (value: string): string {
  const region = normalizeRegion(value)
  if (!isValidRegion(region)) throw new InvalidArgumentError(`"${value}" is not a region: ${subdivisionProblem(region) ?? 'an ISO 3166-1 alpha-2 country code, optionally with a subdivision (e.g. de, us-ca)'}.`)
  return region
}

/**
 * `spareband start`'s command line for `flags` (FLAG_KEYS attribute names,
 * as resolveFlags() takes them): `{ exitPorts: '80,443', allowPrivateTargets: true }`
 * is `--exit-ports 80,443 --allow-private-targets`, a list repeats its flag.
 */
export function flagArgs (flags: Record<string, unknown>): string[] {
  return Object.entries(flags).flatMap(([attr, v]) => {
    const spec = FLAG_KEYS[attr]
    if (spec == null) throw new TypeError(`flagArgs: no flag for "${attr}"`)
    // --no-supply sets supply to false
    if (typeof v === 'boolean') return v === !spec.flag.startsWith('--no-') ? [spec.flag] : []
    return (Array.isArray(v) ? v : [v]).flatMap(x => [spec.flag, String(x)])
  })
}

export function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

export interface ResolvedCliConfig {
  dataDir: string
  configFile: string
  config: SparebandConfig
}

export function resolveCliConfig (cmd: Command, dataDir: string, env: NodeJS.ProcessEnv = process.env): ResolvedCliConfig {
  const opts = cmd.opts()
  const defaultFile = join(dataDir, 'config.toml')
  // read as a file named "", it was ": no such config file"
  if (opts.config === '') throw new UsageError(`--config is empty: name a config file, or leave the flag out for ${defaultFile}`)
  const configFile = opts.config ?? defaultFile
  const typed = Object.fromEntries(Object.keys(FLAG_KEYS).filter(attr => cmd.getOptionValueSource(attr) === 'cli').map(attr => [attr, opts[attr]]))
  const networkSource = opts.network != null ? '--network' : 'SPAREBAND_NETWORK'
  const config = resolveFlags(typed, opts.network ?? env.SPAREBAND_NETWORK, env, () => readConfigFile(configFile, { required: opts.config != null ? '--config' : undefined }), networkSource)
  return { dataDir, configFile, config }
}

/**
 * A config file's `network.name` that names another network shipped in
 * networks/ than the one the node runs on: the operator meant to join it,
 * but the name alone only relabels the node's network (`[network] name =
 * "local"` left a node on the public network's DHT rules, saying "local"
 * in status while it warned to use --network local).
 */
function checkNetworkName (layer: ConfigLayer, running: string): void {
  const name = (layer.values as { network?: { name?: unknown } }).network?.name
  if (typeof name !== 'string' || name === running || !existsSync(join(shippedNetworksDir(), `${name}.json`))) return
  const source = typeof layer.source === 'function' ? layer.source('network.name') : layer.source
  throw new ConfigError(`${source}: network.name = "${name}" names the network shipped as networks/${name}.json, but this node runs on network "${running}": join it with --network ${name} (or SPAREBAND_NETWORK=${name}), which loads its DHT protocol, topics, bootstrap peers and local_testnet; network.name alone only renames the node's network`, { source, key: 'network.name' })
}

/**
 * The config `spareband start` resolves from `flags` (FLAG_KEYS attribute
 * names, values as commander hands them over), the network definition,
 * the environment and, when given, a config file's layer (read after the
 * network definition is found, so their errors come in that order). A command that
 * starts nodes itself (testnet) checks what it passes them with it before
 * it starts any: a bad value is then the flag's own ConfigError (exit 2),
 * not a node that exits.
 */
export function resolveFlags (flags: Record<string, unknown>, networkName?: string, env: NodeJS.ProcessEnv = process.env, configFile?: () => ConfigLayer, networkSource = '--network'): SparebandConfig {
  const layers: ConfigLayer[] = []
  let network = defaultConfig.network.name
  if (networkName != null) {
    const { file, definition } = loadNetworkDefinition(networkName, networkSource)
    layers.push(networkLayer(file, definition))
    network = definition.name
  }
  if (configFile != null) {
    const layer = configFile()
    checkNetworkName(layer, network)
    layers.push(layer)
  }
  layers.push(envLayer(env))
  const entries: Array<{ key: string, value: unknown, source: string }> = []
  for (const [attr, v] of Object.entries(flags)) {
    const spec = FLAG_KEYS[attr]
    if (spec == null) throw new TypeError(`resolveFlags: no flag for "${attr}"`)
    entries.push({ key: spec.key, value: spec.map != null ? spec.map(v) : v, source: `flag ${spec.flag}` })
  }
  layers.push(layerFromKeys(entries))
  return resolveConfig(layers)
}
