/**
 * Turns `spareband start` flags into config: defaults < network definition
 * < config.toml < environment < flags. Only flags the user actually typed
 * count, so a flag's default never hides a value from the file.
 */

import { join } from 'node:path'
import { InvalidArgumentError } from 'commander'
import { envLayer, layerFromKeys, readConfigFile, resolveConfig } from '../node/config.ts'
import { loadNetworkDefinition, networkLayer } from '../node/network-definition.ts'
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
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`"${value}" is not a number.`)
  return n
}

export function parsePortArg (value: string): number {
  const n = parseNumberArg(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`"${value}" is not a port (0-65535; 0 picks a free one).`)
  return n
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
  const layers: ConfigLayer[] = []
  const networkName = opts.network ?? env.SPAREBAND_NETWORK
  if (networkName != null) {
    const { file, definition } = loadNetworkDefinition(networkName)
    layers.push(networkLayer(file, definition))
  }
  const configFile = opts.config ?? join(dataDir, 'config.toml')
  // the data directory's own file may be missing; one named with --config must exist
  layers.push(readConfigFile(configFile, { optional: opts.config == null }))
  layers.push(envLayer(env))
  const entries: Array<{ key: string, value: unknown, source: string }> = []
  for (const [attr, spec] of Object.entries(FLAG_KEYS)) {
    if (cmd.getOptionValueSource(attr) !== 'cli') continue
    const v = opts[attr]
    entries.push({ key: spec.key, value: spec.map != null ? spec.map(v) : v, source: `flag ${spec.flag}` })
  }
  layers.push(layerFromKeys(entries))
  return { dataDir, configFile, config: resolveConfig(layers) }
}
