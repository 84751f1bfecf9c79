/**
 * `spareband start` flags as the command defines them, through
 * resolveCliConfig() to the config and the ledger settings the node opens
 * ledger.db with. Only the options are parsed: no node is started.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command } from 'commander'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { registerStart } from '../../src/cli/commands/start.ts'
import { flagArgs, resolveCliConfig, resolveFlags } from '../../src/cli/config-from-flags.ts'
import { ledgerSettings } from '../../src/node/accounting-report.ts'

let dir: string

beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'sb-start-flags-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true, maxRetries: 5 }) })

/** The start command with `args` parsed, as commander leaves it before the action runs. */
function startWith (args: string[]): Command {
  const program = new Command()
  registerStart(program, () => dir)
  const start = program.commands.find(c => c.name() === 'start')!
  start.parseOptions(args)
  return start
}

describe('--gossip-retention-days', () => {
  it('sets accounting.gossip_retention_days, which the ledger gets in ms; without it the config file\'s value stands', () => {
    const { config } = resolveCliConfig(startWith(['--gossip-retention-days', '7']), dir, {})
    expect(config.accounting.gossip_retention_days).toBe(7)
    expect(ledgerSettings(config.accounting).gossipRetentionMs).toBe(7 * 86_400_000)
    expect(resolveCliConfig(startWith([]), dir, { SPAREBAND_GOSSIP_RETENTION_DAYS: '0' }).config.accounting.gossip_retention_days).toBe(0)
  })

  it('a bad value names the flag and the key', () => {
    let err: any
    try {
      resolveCliConfig(startWith(['--gossip-retention-days', '0.25']), dir, {})
    } catch (e) {
      err = e
    }
    expect(err?.name).toBe('ConfigError')
    expect(err.message).toBe('flag --gossip-retention-days: accounting.gossip_retention_days = 0.25 is invalid: must be 0 (keep them for ever) or from 1 to 36500 days')
  })
})

describe('--config FILE', () => {
  it('a file named with --config that does not exist is a ConfigError naming it; the data directory\'s own config.toml may be missing', () => {
    const missing = join(dir, 'prod.tmol')
    let err: any
    try {
      resolveCliConfig(startWith(['--config', missing]), dir, {})
    } catch (e) {
      err = e
    }
    expect(err?.name).toBe('ConfigError')
    expect(err?.source).toBe(missing)
    expect(err?.message).toContain(missing)
    expect(resolveCliConfig(startWith([]), dir, {}).config.exit.allowed_ports).toEqual([80, 443])
  })
})

describe('flagArgs() and resolveFlags(): a command that starts nodes (testnet) checks what it passes them', () => {
  const flags = { region: 'de', listen: ['/ip4/127.0.0.1/tcp/0'], apiPort: 0, exitPorts: '80,8000-8100', allowPrivateTargets: true, supply: false, bootstrap: [] }

  it('flagArgs() is the start command line that parses back to the same config', () => {
    const args = flagArgs(flags)
    expect(args).toEqual(['--region', 'de', '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--exit-ports', '80,8000-8100', '--allow-private-targets', '--no-supply'])
    expect(resolveCliConfig(startWith(args), dir, {}).config).toEqual(resolveFlags(flags, undefined, {}))
  })

  it('resolveFlags() throws the ConfigError start would, naming the flag', () => {
    let err: any
    try {
      resolveFlags({ exitPorts: '99999' }, 'local', {})
    } catch (e) {
      err = e
    }
    expect(err?.name).toBe('ConfigError')
    expect(err.message).toBe('flag --exit-ports: exit.allowed_ports = ["99999"] is invalid: port 99999 in "99999" is out of range 1-65535')
  })
})

describe('[network] name in config.toml', () => {
  const withToml = async (text: string): Promise<void> => { const { writeFile } = await import('node:fs/promises'); await writeFile(join(dir, 'config.toml'), text) }

  it('naming a shipped network the node does not run on is refused, pointing to --network', async () => {
    await withToml('[network]\nname = "local"\n')
    let err: any
    try { resolveCliConfig(startWith([]), dir, {}) } catch (e) { err = e }
    expect(err?.name).toBe('ConfigError')
    expect(err?.key).toBe('network.name')
    expect(err?.message).toBe(`${join(dir, 'config.toml')}: network.name = "local" names the network shipped as networks/local.json, but this node runs on network "spareband": join it with --network local (or SPAREBAND_NETWORK=local), which loads its DHT protocol, topics, bootstrap peers and local_testnet; network.name alone only renames the node's network`)
  })

  it('is taken when it names the network the node runs on, or one of the operator\'s own', async () => {
    await withToml('[network]\nname = "local"\n')
    const local = resolveCliConfig(startWith(['--network', 'local']), dir, {}).config.network
    expect(local).toMatchObject({ name: 'local', local_testnet: true })
    expect(resolveCliConfig(startWith([]), dir, { SPAREBAND_NETWORK: 'local' }).config.network.name).toBe('local')
    await withToml('[network]\nname = "spareband"\n')
    expect(resolveCliConfig(startWith([]), dir, {}).config.network.name).toBe('spareband')
    await withToml('[network]\nname = "our-lab"\ndht_protocol = "/our-lab/kad/1.0.0"\n')
    expect(resolveCliConfig(startWith([]), dir, {}).config.network).toMatchObject({ name: 'our-lab', dht_protocol: '/our-lab/kad/1.0.0' })
  })
})
