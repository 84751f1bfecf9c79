import { describe, it, expect } from 'vitest'
import { chmod, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { configModeWarning, defaultConfig, envLayer, layerFromKeys, readConfigFile, resolveConfig } from '../../src/node/config.ts'
import { loadNetworkDefinition, networkLayer } from '../../src/node/network-definition.ts'

async function tomlFile (text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-config-'))
  const file = join(dir, 'config.toml')
  await writeFile(file, text)
  return file
}

function catchError (fn: () => unknown): any {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected an error')
}

describe('config precedence', () => {
  it('uses the defaults when nothing is given', () => {
    const c = resolveConfig([])
    expect(c).toEqual(defaultConfig)
    expect(c.region).toBeUndefined()
  })

  it('file over defaults, environment over file, flags over environment', async () => {
    const file = await tomlFile('region = "de"\n[api]\nport = 7001\n[proxy]\nsocks_port = 1081\nhttp_port = 3129\n')
    const env = envLayer({ SPAREBAND_API_PORT: '7002', SPAREBAND_SOCKS_PORT: '1082' })
    const flags = layerFromKeys([{ key: 'api.port', value: 7003, source: 'flag --api-port' }])
    const c = resolveConfig([readConfigFile(file), env, flags])
    expect(c.region).toBe('de') // file only
    expect(c.proxy.http_port).toBe(3129) // file only
    expect(c.proxy.socks_port).toBe(1082) // env beats file
    expect(c.api.port).toBe(7003) // flag beats env and file
    expect(c.api.host).toBe('127.0.0.1') // default kept beside overridden sibling
  })

  it('numbers from the environment and flags are decimal: hex and the like are refused, not read as another number', async () => {
    expect(resolveConfig([envLayer({ SPAREBAND_MAX_TUNNELS: ' 12 ', SPAREBAND_CAPACITY_MBPS: '1e3' })]).exit.max_tunnels).toBe(12)
    expect(resolveConfig([envLayer({ SPAREBAND_CAPACITY_MBPS: '1e3' })]).exit.capacity_mbps).toBe(1000)
    for (const raw of ['0x10', '0b11', '0o7', 'Infinity', '1,5', '']) {
      expect(() => resolveConfig([envLayer({ SPAREBAND_MAX_TUNNELS: raw })]), raw).toThrow(/SPAREBAND_MAX_TUNNELS|exit\.max_tunnels/)
    }
    const { parseNumberArg } = await import('../../src/cli/config-from-flags.ts')
    expect(parseNumberArg('2.5')).toBe(2.5)
    expect(() => parseNumberArg('0x10')).toThrow('"0x10" is not a number (write it in decimal, e.g. 16 or 2.5).')
  })

  it('a SPAREBAND_* variable that is no setting is refused, with the one likely meant; the others of ours, the bench\'s and the tests\' are let be', () => {
    let err: any
    try { envLayer({ SPAREBAND_MAX_TUNELS: '3', SPAREBAND_DATA_DIR: '/tmp/x' }) } catch (e) { err = e }
    expect(err?.name).toBe('ConfigError')
    expect(err?.source).toBe('environment variable SPAREBAND_MAX_TUNELS')
    expect(err?.message).toMatch(/^environment variable SPAREBAND_MAX_TUNELS is not a spareband setting, did you mean SPAREBAND_MAX_TUNNELS\? \(the variables: SPAREBAND_REGION, /)
    expect(() => envLayer({ SPAREBAND_DAILY_QUOTA: '5' })).toThrow(/did you mean SPAREBAND_DAILY_QUOTA_GB\?/)
    expect(() => envLayer({ SPAREBAND_COLOUR: 'blue' })).toThrow(/^environment variable SPAREBAND_COLOUR is not a spareband setting \(the variables: /)
    const fine = envLayer({ SPAREBAND_DATA_DIR: '/tmp/x', SPAREBAND_NETWORK: 'local', SPAREBAND_NO_RELAUNCH: '1', SPAREBAND_BENCH_MIB: '64', SPAREBAND_TESTS_TMPDIR: '/tmp', SPAREBAND_REGION: 'de', PATH: '/bin' })
    expect(resolveConfig([fine]).region).toBe('de')
  })

  it('arrays from a later layer replace, not extend', async () => {
    const file = await tomlFile('listen = ["/ip4/127.0.0.1/tcp/1"]\n')
    const c = resolveConfig([readConfigFile(file), envLayer({ SPAREBAND_LISTEN: '/ip4/127.0.0.1/tcp/2,/ip4/127.0.0.1/tcp/3' })])
    expect(c.listen).toEqual(['/ip4/127.0.0.1/tcp/2', '/ip4/127.0.0.1/tcp/3'])
  })

  it('a network definition sits below the file', async () => {
    const { file, definition } = loadNetworkDefinition('local')
    const cfgFile = await tomlFile('[network]\nname = "mine"\n')
    const c = resolveConfig([networkLayer(file, definition), readConfigFile(cfgFile)])
    expect(c.network.name).toBe('mine')
    expect(c.network.local_testnet).toBe(true)
  })

  it('normalises regions and reads booleans from the environment', () => {
    const c = resolveConfig([envLayer({ SPAREBAND_REGION: 'US-CA', SPAREBAND_SUPPLY: 'false', SPAREBAND_EXIT_PORTS: '80,8000-8100' })])
    expect(c.region).toBe('us-ca')
    expect(c.exit.enabled).toBe(false)
    expect(c.exit.allowed_ports).toEqual(['80', '8000-8100'])
  })

  it('reads the exit\'s rate caps, tunnel limits, quotas and idle timeout from the environment', () => {
    const c = resolveConfig([envLayer({
      SPAREBAND_UPLOAD_MBPS: '8',
      SPAREBAND_DOWNLOAD_MBPS: '16',
      SPAREBAND_PER_CONSUMER_MBPS: '2.5',
      SPAREBAND_MAX_TUNNELS: '64',
      SPAREBAND_MAX_TUNNELS_PER_CONSUMER: '8',
      SPAREBAND_DAILY_QUOTA_GB: '10',
      SPAREBAND_MONTHLY_QUOTA_GB: '200',
      SPAREBAND_IDLE_TIMEOUT: '90'
    })])
    expect(c.exit).toMatchObject({ upload_mbps: 8, download_mbps: 16, per_consumer_mbps: 2.5, max_tunnels: 64, max_tunnels_per_consumer: 8, daily_quota_gb: 10, monthly_quota_gb: 200, idle_timeout_seconds: 90 })
    const err = catchError(() => resolveConfig([envLayer({ SPAREBAND_MAX_TUNNELS: 'lots' })]))
    expect(err.message).toMatch(/^environment variable SPAREBAND_MAX_TUNNELS: exit\.max_tunnels = "lots" is invalid/)
  })

  it('returns a config that structuredClone can copy', () => {
    expect(structuredClone(resolveConfig([]))).toEqual(defaultConfig)
  })
})

describe('config validation errors', () => {
  it('names the file, key, value and what is allowed', async () => {
    const file = await tomlFile('[exit]\nallowed_ports = [80, "90-70"]\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.name).toBe('ConfigError')
    expect(err.source).toBe(file)
    expect(err.key).toBe('exit.allowed_ports')
    expect(err.message).toContain(file)
    expect(err.message).toContain('exit.allowed_ports')
    expect(err.message).toContain('90-70')
    expect(err.message).toContain('empty')
  })

  it('rejects an unknown region naming it', async () => {
    const file = await tomlFile('region = "zz"\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.key).toBe('region')
    expect(err.message).toContain('"zz"')
    expect(err.message).toContain('ISO 3166')
  })

  it('rejects unknown keys and lists the allowed ones', async () => {
    const file = await tomlFile('[exit]\nalowed_ports = [80]\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.name).toBe('ConfigError')
    expect(err.message).toContain('exit.alowed_ports')
    expect(err.message).toContain('allowed_ports')
  })

  it('names the file an unknown top-level key came from, not "defaults"', async () => {
    const file = await tomlFile('regoin = "de"\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.name).toBe('ConfigError')
    expect(err.source).toBe(file)
    expect(err.message).toBe(`${file}: unknown key "regoin", did you mean "region"? (allowed here: region, network, listen, announce, api, proxy, exit, accounting, relay)`)
    // and a section's unknown key, as before
    const file2 = await tomlFile('[exit]\nalowed_ports = [80]\n')
    expect(catchError(() => resolveConfig([readConfigFile(file2)])).message).toMatch(new RegExp(`^${file2.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: unknown key "exit.alowed_ports"`))
  })

  it('says where an unknown key belongs: a key of a section whose header is still commented out lands in the one above', async () => {
    // the template's [exit] header left commented, its max_tunnels uncommented: TOML puts it under [proxy]
    const file = await tomlFile('[proxy]\nsocks_port = 1081\n\n# [exit]\nmax_tunnels = 10\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.key).toBe('proxy.max_tunnels')
    expect(err.message).toBe(`${file}: unknown key "proxy.max_tunnels", did you mean "exit.max_tunnels"? (it belongs under [exit]) (allowed here: enabled, host, socks_port, http_port, default_region, warm_streams, username, password)`)
    // a name several sections have: all of them; a misspelling: the close one; nothing close: no guess
    const guess = async (toml: string): Promise<string> => {
      const f = await tomlFile(toml)
      return catchError(() => resolveConfig([readConfigFile(f)])).message.replace(`${f}: `, '').replace(/ \(allowed here.*$/, '')
    }
    expect(await guess('[api]\nenabled = true\n')).toBe('unknown key "api.enabled", did you mean one of "proxy.enabled", "exit.enabled", "accounting.enabled", "relay.enabled"?')
    expect(await guess('[exit]\nmax_tunels = 3\n')).toBe('unknown key "exit.max_tunels", did you mean "exit.max_tunnels"?')
    expect(await guess('[exit]\nbandwidth = 3\n')).toBe('unknown key "exit.bandwidth"')
  })

  it('names the environment variable a bad value came from', () => {
    const err = catchError(() => resolveConfig([envLayer({ SPAREBAND_API_PORT: 'seventy' })]))
    expect(err.source).toBe('environment variable SPAREBAND_API_PORT')
    expect(err.key).toBe('api.port')
    expect(err.message).toContain('"seventy"')
  })

  it('names the flag a bad value came from', () => {
    const err = catchError(() => resolveConfig([layerFromKeys([{ key: 'exit.schedule', value: 'funday all', source: 'flag --schedule' }])]))
    expect(err.source).toBe('flag --schedule')
    expect(err.message).toContain('funday')
  })

  it('checks denied_cidrs and denied_domains with the exit policy\'s own parsers', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['denied_cidrs = ["10/8"]', 'exit.denied_cidrs', /exit\.denied_cidrs = \["10\/8"\] is invalid: "10" in "10\/8" is not an IP address: write IPv4 as four decimal numbers/],
      ['denied_cidrs = ["10.0.0.0/8", "999.1.1.1/8"]', 'exit.denied_cidrs', /"999\.1\.1\.1" in "999\.1\.1\.1\/8" is not an IP address/],
      ['denied_cidrs = ["10.0.0.0/33"]', 'exit.denied_cidrs', /"10\.0\.0\.0\/33" has a prefix length outside 0-32/],
      ['denied_cidrs = ["fe80::1%eth0/64"]', 'exit.denied_cidrs', /is not an IP address/],
      ['denied_domains = ["bad domain"]', 'exit.denied_domains', /exit\.denied_domains = \["bad domain"\] is invalid: "bad domain" is not a domain name/],
      ['denied_domains = ["a..b"]', 'exit.denied_domains', /"a\.\.b" is not a domain name/],
      ['denied_domains = [""]', 'exit.denied_domains', /"" is not a domain name/]
    ]
    for (const [line, key, pattern] of cases) {
      const file = await tomlFile(`[exit]\n${line}\n`)
      const err = catchError(() => resolveConfig([readConfigFile(file)]))
      expect(err.name, line).toBe('ConfigError')
      expect(err.key, line).toBe(key)
      expect(err.message, line).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `))
      expect(err.message, line).toMatch(pattern)
      // the operator's key names, not the library's
      expect(err.message, line).not.toMatch(/deniedCidrs|deniedDomains|exit policy/)
    }
  })

  it('accepts a bare address in denied_cidrs as one host, and the domain spellings the policy takes', async () => {
    const file = await tomlFile('[exit]\ndenied_cidrs = ["198.51.100.7", "2001:db8::1", "203.0.113.0/24"]\ndenied_domains = ["example.com", ".example.org", "*.example.net"]\n')
    const c = resolveConfig([readConfigFile(file)])
    expect(c.exit.denied_cidrs).toEqual(['198.51.100.7', '2001:db8::1', '203.0.113.0/24'])
    expect(c.exit.denied_domains).toEqual(['example.com', '.example.org', '*.example.net'])
  })

  it('refuses an empty exit port list, naming the flag', () => {
    // `--exit-ports=` and `--exit-ports=,` reach the config as [""] and ["", ""]
    for (const value of [[''], ['', ''], [' , ']]) {
      const err = catchError(() => resolveConfig([layerFromKeys([{ key: 'exit.allowed_ports', value, source: 'flag --exit-ports' }])]))
      expect(err.name).toBe('ConfigError')
      expect(err.key).toBe('exit.allowed_ports')
      expect(err.message).toMatch(/^flag --exit-ports: exit\.allowed_ports = .* is invalid: no ports: .*--no-supply/)
    }
  })

  it('refuses a blank entry among exit ports, from a flag, the environment or config.toml', async () => {
    // skipped before: `--exit-ports 80,,443` ran as 80,443 without a word, which hides a forgotten port
    for (const value of [['80', '', '443'], ['80', '443', ''], ['80', ' ', '443']]) {
      const err = catchError(() => resolveConfig([layerFromKeys([{ key: 'exit.allowed_ports', value, source: 'flag --exit-ports' }])]))
      expect(err.name).toBe('ConfigError')
      expect(err.message).toMatch(/^flag --exit-ports: exit\.allowed_ports = .* is invalid: .* has an empty entry: .*80,443,8000-8100/)
    }
    const fromEnv = catchError(() => resolveConfig([envLayer({ SPAREBAND_EXIT_PORTS: '80,,443' })]))
    expect(fromEnv.message).toMatch(/^environment variable SPAREBAND_EXIT_PORTS: .* has an empty entry/)
    const file = await tomlFile('[exit]\nallowed_ports = ["80", "", "443"]\n')
    expect(catchError(() => resolveConfig([readConfigFile(file)])).message).toMatch(/has an empty entry/)
    expect(resolveConfig([envLayer({ SPAREBAND_EXIT_PORTS: '80, 443' })]).exit.allowed_ports).toEqual(['80', ' 443'])
  })

  it('refuses an empty exit port list in config.toml', async () => {
    const file = await tomlFile('[exit]\nallowed_ports = []\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.message).toBe(`${file}: exit.allowed_ports = [] is invalid: no ports: list some (e.g. 80,443 or reduced), or turn the exit off with --no-supply (exit.enabled = false)`)
  })

  it('a value of the wrong type is said in words, with the key\'s unit: "10GB" is a string, 1.5 no whole number', async () => {
    const cases: Array<[string, string]> = [
      ['[exit]\ndaily_quota_gb = "10GB"\n', 'exit.daily_quota_gb = "10GB" is invalid: expected a number in GB, not the string "10GB" (write the number alone, without quotes or unit)'],
      ['[exit]\nmax_tunnels = 1.5\n', 'exit.max_tunnels = 1.5 is invalid: expected a whole number, not 1.5'],
      ['[exit]\nenabled = "yes"\n', 'exit.enabled = "yes" is invalid: expected true or false, not the string "yes"'],
      ['[exit]\ncapacity_mbps = "fast"\n', 'exit.capacity_mbps = "fast" is invalid: expected a number in Mbit/s, not the string "fast" (write the number alone, without quotes or unit)'],
      // a price is in credits per GB, not a size in GB; credits are credits
      ['[exit]\nprice_per_gb = nan\n', 'exit.price_per_gb = NaN is invalid: expected a number in credits per GB, not NaN'],
      ['[accounting]\nstop_at_balance = "1"\n', 'accounting.stop_at_balance = "1" is invalid: expected a number in credits, not the string "1" (write the number alone, without quotes or unit)'],
      // a setting of several forms says which, not zod's "Invalid input"
      ['[exit]\nallowed_ports = [true]\n', 'exit.allowed_ports.0 = true is invalid: expected a port (443), a range as a string ("8000-8100") or "reduced", not true'],
      ['[network]\ndht_server = "yes"\n', 'network.dht_server = "yes" is invalid: expected true, false or "auto", not the string "yes"'],
      ['[relay]\nenabled = 1\n', 'relay.enabled = 1 is invalid: expected true, false or "auto", not 1'],
      // a bound in words, with the key's unit, not zod's "Too big: expected number to be <=40"
      ['[accounting]\npow_difficulty = 99\n', 'accounting.pow_difficulty = 99 is invalid: must be at most 40'],
      ['[accounting]\nreceipt_interval_mb = 0\n', 'accounting.receipt_interval_mb = 0 is invalid: must be above 0, in MiB (2^20 bytes)'],
      ['[exit]\nidle_timeout_seconds = -1\n', 'exit.idle_timeout_seconds = -1 is invalid: must be at least 1, in seconds'],
      ['[api]\nport = 99999\n', 'api.port = 99999 is invalid: must be a port from 0 to 65535 (0 picks a free one)'],
      // TOML has dates
      ['region = 2026-11-27\n', 'region = "2026-11-27" is invalid: expected a string, not a date'],
      ['[exit]\nschedule = { days = 1 }\n', 'exit.schedule = {"days":1} is invalid: expected a string, not a table of settings']
    ]
    for (const [toml, message] of cases) {
      const file = await tomlFile(toml)
      const err = catchError(() => resolveConfig([readConfigFile(file)]))
      expect(err.message).toBe(`${file}: ${message}`)
    }
  })

  it('network.stun_servers: "auto" by default, a list of stun: URLs, or []; anything else names the entry and the form', async () => {
    expect(resolveConfig([]).network.stun_servers).toBe('auto')
    const good = await tomlFile('[network]\nstun_servers = ["stun:stun.example.org:3478", "stun:stun.example.org", "stun:192.0.2.7"]\n')
    expect(resolveConfig([readConfigFile(good)]).network.stun_servers).toEqual(['stun:stun.example.org:3478', 'stun:stun.example.org', 'stun:192.0.2.7'])
    expect(resolveConfig([readConfigFile(await tomlFile('[network]\nstun_servers = []\n'))]).network.stun_servers).toEqual([])
    const cases: Array<[string, string]> = [
      ['"none"', 'expected "auto" or a list of STUN servers (["stun:stun.example.org:3478"]), not "none"'],
      ['["stun:a.example", "https://stun.example.org"]', '"https://stun.example.org" is not a STUN server: write stun:host or stun:host:port, the host a name or an IPv4 address, e.g. "stun:stun.example.org:3478"'],
      ['["stun:stun.example.org:70000"]', '"stun:stun.example.org:70000" has no valid port: 70000 is not from 1 to 65535'],
      // what the WebRTC library throws on when a connection is made: refused here, where the operator sees it
      ['["stuns:stun.example.org"]', '"stuns:stun.example.org" is not a STUN server: write stun:host or stun:host:port, the host a name or an IPv4 address, e.g. "stun:stun.example.org:3478"'],
      ['["stun:[2001:db8::1]:3478"]', '"stun:[2001:db8::1]:3478" is not a STUN server: write stun:host or stun:host:port, the host a name or an IPv4 address, e.g. "stun:stun.example.org:3478"'],
      ['[3478]', '3478 is not a STUN server: write it as a string, e.g. "stun:stun.example.org:3478"']
    ]
    for (const [value, message] of cases) {
      const file = await tomlFile(`[network]\nstun_servers = ${value}\n`)
      const err = catchError(() => resolveConfig([readConfigFile(file)]))
      expect(err.key).toBe('network.stun_servers')
      expect(err.message).toContain(`is invalid: ${message}`)
    }
  })

  it('a bad value a later layer overrides still stops the node, naming where it is: a broken line must not wait for the day the flag goes', async () => {
    const file = await tomlFile('[exit]\nallowed_ports = ["80-70"]\n')
    const err = catchError(() => resolveConfig([readConfigFile(file), layerFromKeys([{ key: 'exit.allowed_ports', value: ['80'], source: 'flag --exit-ports' }])]))
    expect(err.name).toBe('ConfigError')
    expect(err.key).toBe('exit.allowed_ports')
    expect(err.message).toBe(`${file}: exit.allowed_ports = ["80-70"] is invalid: range "80-70" is empty: 80 > 70; flag --exit-ports sets it too, but fix this one all the same`)
    const env = catchError(() => resolveConfig([envLayer({ SPAREBAND_API_PORT: 'abc' }), layerFromKeys([{ key: 'api.port', value: 0, source: 'flag --api-port' }])]))
    expect(env.message).toBe('environment variable SPAREBAND_API_PORT: api.port = "abc" is invalid: expected a number, not the string "abc" (write the number alone, without quotes or unit); flag --api-port sets it too, but fix this one all the same')
    // a good value overridden is no matter, nor one set twice alike
    const good = await tomlFile('[exit]\nallowed_ports = [8080]\nmax_tunnels = 5\n')
    const config = resolveConfig([readConfigFile(good), layerFromKeys([{ key: 'exit.allowed_ports', value: ['80'], source: 'x' }, { key: 'exit.max_tunnels', value: 5, source: 'x' }])])
    expect(config.exit.allowed_ports).toEqual(['80'])
  })

  it('refuses max_tunnels = 0 and max_tunnels_per_consumer = 0, pointing to --no-supply', async () => {
    for (const key of ['max_tunnels', 'max_tunnels_per_consumer']) {
      const file = await tomlFile(`[exit]\n${key} = 0\n`)
      const err = catchError(() => resolveConfig([readConfigFile(file)]))
      expect(err.key).toBe(`exit.${key}`)
      expect(err.message).toBe(`${file}: exit.${key} = 0 is invalid: must be at least 1; to take no tunnels, turn the exit off with --no-supply (exit.enabled = false)`)
    }
    expect(resolveConfig([layerFromKeys([{ key: 'exit.max_tunnels', value: 1, source: 'x' }])]).exit.max_tunnels).toBe(1)
  })

  it('refuses one port for two of the node\'s own listeners (control API, proxies, TCP listen addresses), naming the key that was set', async () => {
    const err = catchError(() => resolveConfig([envLayer({ SPAREBAND_API_PORT: '1080' })]))
    expect(err.name).toBe('ConfigError')
    expect(err.key).toBe('api.port')
    expect(err.message).toBe('environment variable SPAREBAND_API_PORT: api.port = 1080 is invalid: proxy.socks_port is 1080 (on 127.0.0.1) too; the control API, the proxies and the TCP listen addresses each need a port of their own (0 picks a free one)')
    // a default listen address on every interface holds 4001 on loopback too
    const file = await tomlFile('[proxy]\nhttp_port = 4001\n')
    const err2 = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err2.key).toBe('proxy.http_port')
    expect(err2.message).toBe(`${file}: proxy.http_port = 4001 is invalid: the listen address /ip4/0.0.0.0/tcp/4001 has port 4001 too; the control API, the proxies and the TCP listen addresses each need a port of their own (0 picks a free one)`)
    const err3 = catchError(() => resolveConfig([layerFromKeys([{ key: 'listen', value: ['/ip4/127.0.0.1/tcp/7070'], source: 'flag --listen' }])]))
    expect(err3.key).toBe('listen')
    expect(err3.message).toBe('flag --listen: listen address /ip4/127.0.0.1/tcp/7070 is invalid: api.port is 7070 (on 127.0.0.1) too; the control API, the proxies and the TCP listen addresses each need a port of their own (0 picks a free one)')
    // what stays allowed: 0s, the same port on two other addresses, a proxy that is off, the listen addresses among themselves (the defaults' IPv4 and IPv6 4001)
    expect(resolveConfig([envLayer({ SPAREBAND_API_PORT: '0', SPAREBAND_SOCKS_PORT: '0', SPAREBAND_HTTP_PORT: '0', SPAREBAND_LISTEN: '/ip4/127.0.0.1/tcp/0' })]).api.port).toBe(0)
    expect(resolveConfig([layerFromKeys([{ key: 'listen', value: ['/ip4/192.0.2.1/tcp/7070'], source: 'x' }])]).listen).toEqual(['/ip4/192.0.2.1/tcp/7070'])
    expect(resolveConfig([layerFromKeys([{ key: 'proxy.enabled', value: false, source: 'x' }, { key: 'api.port', value: 1080, source: 'x' }])]).api.port).toBe(1080)
    expect(resolveConfig([]).listen).toContain('/ip6/::/tcp/4001')
    // two TCP listen addresses of one family on one port: named, not "is in use" at start
    const twice = catchError(() => resolveConfig([layerFromKeys([{ key: 'listen', value: ['/ip4/127.0.0.1/tcp/21131', '/ip4/127.0.0.1/tcp/21131'], source: 'flag --listen' }])]))
    expect(twice.key).toBe('listen')
    expect(twice.message).toBe('flag --listen: listen is invalid: it names /ip4/127.0.0.1/tcp/21131 twice; each TCP listen address needs a port of its own (0 picks a free one)')
    const wildcard = catchError(() => resolveConfig([layerFromKeys([{ key: 'listen', value: ['/ip4/0.0.0.0/tcp/4005', '/ip4/127.0.0.1/tcp/4005'], source: 'flag --listen' }])]))
    expect(wildcard.message).toBe('flag --listen: listen is invalid: /ip4/0.0.0.0/tcp/4005 and /ip4/127.0.0.1/tcp/4005 both take port 4005; each TCP listen address needs a port of its own (0 picks a free one)')
    expect(resolveConfig([layerFromKeys([{ key: 'listen', value: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0', '/ip4/192.0.2.1/tcp/4005', '/ip4/192.0.2.2/tcp/4005', '/p2p-circuit', '/p2p-circuit'], source: 'x' }])]).listen).toHaveLength(6)
  })

  it('refuses an empty listen or announce address, and a listen address no transport of the node listens on', async () => {
    const peer = '12D3KooWPinfe9zTC2TjJTABrQriM6fg3Bedq16DWYs6Apu71jox'
    // "" parses as the empty multiaddr "/": libp2p's stack trace at start (listen), a node announcing only /p2p/<id> (announce)
    for (const entry of ['', '/']) {
      const listen = catchError(() => resolveConfig([layerFromKeys([{ key: 'listen', value: [entry], source: 'flag --listen' }])]))
      expect(listen.name).toBe('ConfigError')
      expect(listen.key).toBe('listen')
      expect(listen.message).toBe(`flag --listen: listen = ["${entry}"] is invalid: "${entry}" is an empty multiaddr: name an address, or leave the entry out`)
      const announce = catchError(() => resolveConfig([layerFromKeys([{ key: 'announce', value: ['/ip4/203.0.113.9/tcp/4001', entry], source: 'flag --announce' }])]))
      expect(announce.key).toBe('announce')
      expect(announce.message).toBe(`flag --announce: announce = ["/ip4/203.0.113.9/tcp/4001","${entry}"] is invalid: "${entry}" is an empty multiaddr: name an address, or leave the entry out`)
    }
    const file = await tomlFile('listen = [""]\n')
    expect(catchError(() => resolveConfig([readConfigFile(file)])).message).toBe(`${file}: listen = [""] is invalid: "" is an empty multiaddr: name an address, or leave the entry out`)
    // alone it failed libp2p's start (exit 1); beside a TCP address it was left out without a word
    for (const entry of ['/ip4/127.0.0.1/tcp/48010/ws', '/ip4/127.0.0.1/udp/4001/quic-v1', '/ip4/127.0.0.1', '/ip4/127.0.0.1/udp/4001/p2p-circuit']) {
      const err = catchError(() => resolveConfig([layerFromKeys([{ key: 'listen', value: ['/ip4/127.0.0.1/tcp/0', entry], source: 'flag --listen' }])]))
      expect(err.name, entry).toBe('ConfigError')
      expect(err.key).toBe('listen')
      expect(err.message).toBe(`flag --listen: listen = ["/ip4/127.0.0.1/tcp/0","${entry}"] is invalid: "${entry}" is no address this node can listen on: the node listens on TCP (/ip4/0.0.0.0/tcp/4001), WebRTC Direct (/ip4/0.0.0.0/udp/4001/webrtc-direct), WebRTC (/webrtc) and circuit relays (/p2p-circuit, or <relay multiaddr>/p2p/<peer id>/p2p-circuit)`)
    }
    // what each transport takes, the defaults among them
    const fine = ['/ip4/127.0.0.1/tcp/0', '/ip6/::1/tcp/0', '/ip4/127.0.0.1/udp/0/webrtc-direct', '/webrtc', '/p2p-circuit', `/ip4/192.0.2.1/tcp/4001/p2p/${peer}/p2p-circuit`, `/dns4/relay.example.org/tcp/443/wss/p2p/${peer}/p2p-circuit`]
    expect(resolveConfig([layerFromKeys([{ key: 'listen', value: fine, source: 'x' }])]).listen).toEqual(fine)
    expect(resolveConfig([]).listen).toEqual(defaultConfig.listen)
    // an announced address need not be one the node listens on: a port forward, a DNS name
    expect(resolveConfig([layerFromKeys([{ key: 'announce', value: ['/dns4/node.example.org/tcp/443/wss'], source: 'x' }])]).announce).toEqual(['/dns4/node.example.org/tcp/443/wss'])
  })

  it('refuses the same port for the SOCKS5 and HTTP proxies, naming the key that was set', async () => {
    const err = catchError(() => resolveConfig([envLayer({ SPAREBAND_HTTP_PORT: '1080' })]))
    expect(err.name).toBe('ConfigError')
    expect(err.key).toBe('proxy.http_port')
    expect(err.message).toBe('environment variable SPAREBAND_HTTP_PORT: proxy.http_port = 1080 is invalid: it is also proxy.socks_port; the SOCKS5 and HTTP proxies each need a port of their own (0 picks a free one)')
    const file = await tomlFile('[proxy]\nsocks_port = 3128\n')
    const err2 = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err2.key).toBe('proxy.socks_port')
    expect(err2.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: proxy\.socks_port = 3128 is invalid: it is also proxy\.http_port`))
    // 0 twice means two free ports; with the proxies off the ports do not matter
    expect(resolveConfig([envLayer({ SPAREBAND_SOCKS_PORT: '0', SPAREBAND_HTTP_PORT: '0' })]).proxy.http_port).toBe(0)
    expect(resolveConfig([layerFromKeys([{ key: 'proxy.enabled', value: false, source: 'x' }, { key: 'proxy.http_port', value: 1080, source: 'x' }])]).proxy.http_port).toBe(1080)
  })

  it('refuses idle and connect timeouts longer than a Node.js timer holds, which would fire at once', async () => {
    // 3e6 s is 3e9 ms: setTimeout() takes that as 1 ms
    const file = await tomlFile('[exit]\nconnect_timeout_seconds = 3000000\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.name).toBe('ConfigError')
    expect(err.key).toBe('exit.connect_timeout_seconds')
    expect(err.message).toBe(`${file}: exit.connect_timeout_seconds = 3000000 is invalid: must be at most 2147483 (about 24.8 days), the longest timer Node.js keeps`)
    const flag = catchError(() => resolveConfig([layerFromKeys([{ key: 'exit.idle_timeout_seconds', value: 2_147_484, source: 'flag --idle-timeout' }])]))
    expect(flag.message).toBe('flag --idle-timeout: exit.idle_timeout_seconds = 2147484 is invalid: must be at most 2147483 (about 24.8 days), the longest timer Node.js keeps')
    const env = catchError(() => resolveConfig([envLayer({ SPAREBAND_IDLE_TIMEOUT: '1e10' })]))
    expect(env.message).toMatch(/^environment variable SPAREBAND_IDLE_TIMEOUT: exit\.idle_timeout_seconds = 10000000000 is invalid: must be at most 2147483/)
    // the longest that fits is taken, and fits: 2147483000 ms < 2^31 ms
    const c = resolveConfig([layerFromKeys([{ key: 'exit.idle_timeout_seconds', value: 2_147_483, source: 'x' }, { key: 'exit.connect_timeout_seconds', value: 2_147_483, source: 'x' }])])
    expect(c.exit.idle_timeout_seconds * 1000).toBeLessThan(2 ** 31)
  })

  it('refuses rate caps a token bucket cannot keep, and intervals longer than a timer holds', () => {
    const fail = (key: string, value: number): string => catchError(() => resolveConfig([layerFromKeys([{ key, value, source: 'x' }])])).message
    // 1e-7 Mbps: a 64 KiB chunk would wait past the longest timer, which then fires at once
    expect(fail('exit.per_consumer_mbps', 1e-7)).toBe('x: exit.per_consumer_mbps = 1e-7 is invalid: must be 0 (no cap) or from 0.001 to 1000000 Mbps')
    expect(fail('exit.upload_mbps', 1e300)).toMatch(/exit\.upload_mbps = 1e\+300 is invalid: must be 0 \(no cap\) or from 0\.001 to 1000000 Mbps/)
    expect(fail('exit.download_mbps', -1)).toMatch(/exit\.download_mbps = -1 is invalid/)
    expect(fail('accounting.publish_interval_seconds', 3e6)).toMatch(/accounting\.publish_interval_seconds = 3000000 is invalid: must be at most 2147483/)
    expect(fail('accounting.receipt_interval_seconds', 3e6)).toMatch(/accounting\.receipt_interval_seconds = 3000000 is invalid: must be at most 2147483/)
    expect(fail('relay.duration_limit_seconds', 3e6)).toMatch(/relay\.duration_limit_seconds = 3000000 is invalid: must be at most 2147483/)
    expect(fail('network.redial_max_seconds', 3e6)).toMatch(/network\.redial_max_seconds = 3000000 is invalid: must be at most 2147483/)
    // redials start 1 s apart: a cap below that would not be one
    expect(fail('network.redial_max_seconds', 0.5)).toMatch(/network\.redial_max_seconds = 0\.5 is invalid/)
    // the edges are taken
    const c = resolveConfig([layerFromKeys([{ key: 'exit.per_consumer_mbps', value: 0.001, source: 'x' }, { key: 'exit.upload_mbps', value: 0, source: 'x' }, { key: 'relay.duration_limit_seconds', value: 0, source: 'x' }])])
    expect([c.exit.per_consumer_mbps, c.exit.upload_mbps, c.relay.duration_limit_seconds]).toEqual([0.001, 0, 0])
  })

  it('takes accounting.gossip_retention_days from the file, the environment or a flag, 30 by default and 0 for ever', async () => {
    expect(resolveConfig([]).accounting.gossip_retention_days).toBe(30)
    const file = await tomlFile('[accounting]\ngossip_retention_days = 7\n')
    expect(resolveConfig([readConfigFile(file)]).accounting.gossip_retention_days).toBe(7)
    expect(resolveConfig([readConfigFile(file), envLayer({ SPAREBAND_GOSSIP_RETENTION_DAYS: '0' })]).accounting.gossip_retention_days).toBe(0)
    expect(resolveConfig([layerFromKeys([{ key: 'accounting.gossip_retention_days', value: 365.5, source: 'flag --gossip-retention-days' }])]).accounting.gossip_retention_days).toBe(365.5)
  })

  it('refuses a gossip retention under a day, negative, beyond a century or not a number, naming the key and where it came from', async () => {
    const allowed = 'must be 0 (keep them for ever) or from 1 to 36500 days'
    const file = await tomlFile('[accounting]\ngossip_retention_days = 0.5\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.name).toBe('ConfigError')
    expect(err.key).toBe('accounting.gossip_retention_days')
    expect(err.message).toBe(`${file}: accounting.gossip_retention_days = 0.5 is invalid: ${allowed}`)
    expect(catchError(() => resolveConfig([envLayer({ SPAREBAND_GOSSIP_RETENTION_DAYS: '-1' })])).message)
      .toBe(`environment variable SPAREBAND_GOSSIP_RETENTION_DAYS: accounting.gossip_retention_days = -1 is invalid: ${allowed}`)
    expect(catchError(() => resolveConfig([envLayer({ SPAREBAND_GOSSIP_RETENTION_DAYS: 'a month' })])).message)
      .toMatch(/^environment variable SPAREBAND_GOSSIP_RETENTION_DAYS: accounting\.gossip_retention_days = "a month" is invalid/)
    expect(catchError(() => resolveConfig([layerFromKeys([{ key: 'accounting.gossip_retention_days', value: 1e300, source: 'flag --gossip-retention-days' }])])).message)
      .toBe(`flag --gossip-retention-days: accounting.gossip_retention_days = 1e+300 is invalid: ${allowed}`)
  })

  it('takes accounting.reputation_interval_seconds from the file or the environment: 600 by default, 0 never, under two minutes refused', async () => {
    expect(resolveConfig([]).accounting.reputation_interval_seconds).toBe(600)
    const file = await tomlFile('[accounting]\nreputation_interval_seconds = 3600\n')
    expect(resolveConfig([readConfigFile(file)]).accounting.reputation_interval_seconds).toBe(3600)
    expect(resolveConfig([readConfigFile(file), envLayer({ SPAREBAND_REPUTATION_INTERVAL_SECONDS: '0' })]).accounting.reputation_interval_seconds).toBe(0)
    const tooOften = await tomlFile('[accounting]\nreputation_interval_seconds = 5\n')
    expect(catchError(() => resolveConfig([readConfigFile(tooOften)])).message)
      .toBe(`${tooOften}: accounting.reputation_interval_seconds = 5 is invalid: must be 0 (never report) or from 120 to 86400 seconds`)
  })

  it('an empty schedule is an error, not "always"', () => {
    const err = catchError(() => resolveConfig([layerFromKeys([{ key: 'exit.schedule', value: '', source: 'flag --schedule' }])]))
    expect(err.name).toBe('ConfigError')
    expect(err.message).toBe('flag --schedule: exit.schedule = "" is invalid: schedule is empty: use "always", "never" or rules such as "mon-fri 00:00-07:00, sat-sun all"')
  })

  it('reports TOML syntax errors with line and column', async () => {
    const file = await tomlFile('region = "de"\n[exit\n')
    const err = catchError(() => readConfigFile(file))
    expect(err.name).toBe('ConfigError')
    expect(err.message).toMatch(/line 2/)
    expect(err.message).toContain(file)
  })

  it('takes an IP literal or localhost for the hosts the node binds (api.host, proxy.host), not a name to look up or a typo', () => {
    for (const host of ['127.0.0.1', '::1', '::', '0.0.0.0', 'localhost', 'fe80::1%eth0.100']) {
      expect(resolveConfig([layerFromKeys([{ key: 'api.host', value: host, source: 'x' }])]).api.host).toBe(host)
    }
    // brackets and short forms do not bind as written (ENOTFOUND, or through getaddrinfo)
    for (const [key, host] of [['api.host', 'not a host!'], ['api.host', 'example.org'], ['proxy.host', '127.0.0.1.'], ['api.host', '[::1]'], ['api.host', '127.1'], ['api.host', '0']]) {
      const err = catchError(() => resolveConfig([layerFromKeys([{ key, value: host, source: 'x' }])]))
      expect(err.message).toBe(`x: ${key} = ${JSON.stringify(host)} is invalid: expected an IP address of this machine (127.0.0.1, ::1, or 0.0.0.0 for every interface, written out: no brackets) or "localhost"`)
    }
  })

  it('refuses proxies beyond loopback without credentials', () => {
    const err = catchError(() => resolveConfig([layerFromKeys([{ key: 'proxy.host', value: '0.0.0.0', source: 'flag --proxy-host' }])]))
    expect(err.key).toBe('proxy.host')
    expect(err.message).toContain('flag --proxy-host')
    expect(err.message).toContain('proxy.host = "0.0.0.0" is beyond loopback: set proxy.password too (SPAREBAND_PROXY_PASSWORD; with proxy.username, clients must give that user name as well)')
    // a password alone is enough
    expect(resolveConfig([layerFromKeys([
      { key: 'proxy.host', value: '0.0.0.0', source: 'x' },
      { key: 'proxy.password', value: 'pw', source: 'x' }
    ])]).proxy.host).toBe('0.0.0.0')
    const ok = resolveConfig([layerFromKeys([
      { key: 'proxy.host', value: '0.0.0.0', source: 'x' },
      { key: 'proxy.username', value: 'alice', source: 'x' },
      { key: 'proxy.password', value: 'pw', source: 'x' }
    ])])
    expect(ok.proxy.host).toBe('0.0.0.0')
  })

  it('treats a missing file as empty', () => {
    expect(readConfigFile('/nonexistent/config.toml').values).toEqual({})
  })

  it('rejects a wrong type with the value shown', async () => {
    const file = await tomlFile('[exit]\nmax_tunnels = "many"\n')
    const err = catchError(() => resolveConfig([readConfigFile(file)]))
    expect(err.key).toBe('exit.max_tunnels')
    expect(err.message).toContain('"many"')
  })
})

describe('network definitions', () => {
  it('loads the shipped ones by name', () => {
    expect(loadNetworkDefinition('spareband').definition.dht_protocol).toBe('/spareband/kad/1.0.0')
  })

  it('rejects an unknown name and a broken file clearly', async () => {
    expect(catchError(() => loadNetworkDefinition('nope')).message).toContain('unknown network "nope"')
    const dir = await mkdtemp(join(tmpdir(), 'sb-net-'))
    const file = join(dir, 'net.json')
    await writeFile(file, '{"name": "x", "dht_protocol": "no-slash"}')
    const err = catchError(() => loadNetworkDefinition(file))
    expect(err.name).toBe('ConfigError')
    expect(err.message).toContain('dht_protocol')
    // in words, not zod's ("Invalid input: expected string, received undefined", "Unrecognized key")
    const cases: Array<[string, string]> = [
      ['{"name": "x"}', '"dht_protocol" is missing: expected a string, not nothing'],
      ['{"name": "x", "dht_protocol": "/x/kad/1.0.0", "extra": 1}', 'unknown key "extra" in a network definition (allowed: name, dht_protocol, bootstrap, topics, local_testnet)'],
      ['{"name": "x", "dht_protocol": "/x/kad/1.0.0", "local_testnet": "yes"}', '"local_testnet" is invalid: expected true or false, not the string "yes"'],
      ['[]', 'the network definition is invalid: expected a table of settings, not a list'],
      ['{"name": "x", "dht_protocol": "/x/kad/1.0.0", "topics": {"receipts": "r", "reputation": "p", "gossip": "g"}}', 'unknown key "topics.gossip" in a network definition (allowed in topics: receipts, reputation)']
    ]
    for (const [json, message] of cases) {
      await writeFile(file, json)
      expect(catchError(() => loadNetworkDefinition(file)).message).toBe(`${file}: ${message}`)
    }
  })
})

describe('configModeWarning', () => {
  it('warns while a config file with proxy.password can be read by others, and only then', async () => {
    const file = await tomlFile('[proxy]\npassword = "s3cret"\n')
    for (const mode of [0o644, 0o640, 0o604]) {
      await chmod(file, mode)
      expect(configModeWarning(file), mode.toString(8)).toBe(`${file} holds proxy.password and can be read by other users (mode 0${mode.toString(8)}): whoever reads it can use this node's proxies and spend its credits; run "chmod 600 ${file}"`)
    }
    await chmod(file, 0o600)
    expect(configModeWarning(file)).toBeUndefined()
    // no password in it (or an empty one), no file, not TOML: nothing to say
    for (const text of ['region = "de"\n', '[proxy]\npassword = ""\n', '[proxy\npassword = "s3cret"\n']) {
      const f = await tomlFile(text)
      await chmod(f, 0o644)
      expect(configModeWarning(f), text).toBeUndefined()
    }
    expect(configModeWarning(join(tmpdir(), 'sb-no-such-config.toml'))).toBeUndefined()
  })
})
