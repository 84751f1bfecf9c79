import { describe, it, expect, afterAll } from 'vitest'
import { createServer } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli, tempDir } from '../utils/cli.ts'
import { createIdentity } from '../../src/node/identity.ts'
import type { AddressInfo, Server } from 'node:net'

/** Free ports everywhere, on loopback, in the local network. */
const LOCAL = ['--network', 'local', '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--socks-port', '0', '--http-port', '0']

async function dataDir (config = ''): Promise<string> {
  const d = await tempDir('sb-exitcfg-')
  await createIdentity(d)
  await writeFile(join(d, 'config.toml'), config)
  return d
}

/** Runs `spareband start` expecting it to fail at once, with one line and no stack trace. */
async function startFails (d: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null, stderr: string }> {
  const r = await runCli(['start', '--data-dir', d, ...LOCAL, ...args], { env, timeoutMs: 30_000 })
  expect(r.stderr).not.toMatch(/\n\s+at /)
  return r
}

const servers: Server[] = []
afterAll(() => { for (const s of servers) s.close() })

async function holdPort (): Promise<number> {
  const s = createServer()
  servers.push(s)
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  return (s.address() as AddressInfo).port
}

describe('exit and proxy settings are checked before the node starts (exit 2)', () => {
  it('bad entries and values in config.toml name the file, the key and the value', async () => {
    const cases: Array<[string, RegExp]> = [
      ['[exit]\ndenied_cidrs = ["10/8"]\n', /config\.toml: exit\.denied_cidrs = \["10\/8"\] is invalid: "10" in "10\/8" is not an IP address/],
      ['[exit]\ndenied_cidrs = ["999.1.1.1/8"]\n', /config\.toml: exit\.denied_cidrs = \["999\.1\.1\.1\/8"\] is invalid/],
      ['[exit]\ndenied_domains = ["bad domain"]\n', /config\.toml: exit\.denied_domains = \["bad domain"\] is invalid: "bad domain" is not a domain name/],
      ['[exit]\nallowed_ports = []\n', /config\.toml: exit\.allowed_ports = \[\] is invalid: no ports/],
      ['[exit]\nmax_tunnels = 0\n', /config\.toml: exit\.max_tunnels = 0 is invalid: must be at least 1/],
      ['[exit]\nschedule = "mon 10:00-10:00"\n', /config\.toml: exit\.schedule = "mon 10:00-10:00" is invalid: .*same time.*"all"/],
      ['[exit]\nschedule = "mon-fri 00:00-07:00 sat-sun all"\n', /separate rules with commas/],
      ['[proxy]\nsocks_port = 4444\nhttp_port = 4444\n', /config\.toml: proxy\.http_port = 4444 is invalid: it is also proxy\.socks_port/]
    ]
    for (const [config, pattern] of cases) {
      const d = await dataDir(config)
      // the ports in the file are the point here: no port flags
      const r = await runCli(['start', '--data-dir', d, '--network', 'local', '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0'], { timeoutMs: 30_000 })
      expect(r.code, config).toBe(2)
      expect(r.stderr, config).toMatch(pattern)
      expect(r.stderr, config).not.toMatch(/deniedCidrs|deniedDomains|exit policy|\n\s+at /)
      expect(r.stderr.trim().split('\n'), config).toHaveLength(1)
    }
  })

  it('bad flag values name the flag', async () => {
    const d = await dataDir()
    const cases: Array<[string[], RegExp, NodeJS.ProcessEnv?]> = [
      [['--exit-ports='], /flag --exit-ports: exit\.allowed_ports = \[""\] is invalid: no ports/],
      [['--exit-ports', ','], /flag --exit-ports: exit\.allowed_ports = \["",""\] is invalid: no ports/],
      [['--schedule='], /flag --schedule: exit\.schedule = "" is invalid: schedule is empty/],
      [['--socks-port', '4445', '--http-port', '4445'], /flag --http-port: proxy\.http_port = 4445 is invalid: it is also proxy\.socks_port/],
      [[], /environment variable SPAREBAND_SCHEDULE: exit\.schedule = "" is invalid/, { SPAREBAND_SCHEDULE: '' }]
    ]
    for (const [args, pattern, env] of cases) {
      const r = await startFails(d, args, env)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr, args.join(' ')).toMatch(pattern)
    }
  })
})

describe('a listener port in use names the listener and its setting', () => {
  it('SOCKS5, HTTP proxy and control API', async () => {
    const d = await dataDir()
    const port = await holdPort()
    const cases: Array<[string[], string]> = [
      [['--socks-port', String(port)], `spareband: the SOCKS5 proxy (proxy.socks_port / --socks-port): 127.0.0.1:${port} is in use`],
      [['--http-port', String(port)], `spareband: the HTTP proxy (proxy.http_port / --http-port): 127.0.0.1:${port} is in use`],
      [['--api-port', String(port)], `spareband: the control API (api.port / --api-port): 127.0.0.1:${port} is in use`]
    ]
    for (const [args, line] of cases) {
      const r = await startFails(d, args)
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stderr.trim(), args.join(' ')).toBe(line)
    }
  })
})
