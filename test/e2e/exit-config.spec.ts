import { describe, it, expect, afterAll } from 'vitest'
import { createServer } from 'node:net'
import { createSocket } from 'node:dgram'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { NodeProcess, runCli, tempDir } from '../utils/cli.ts'
import { callApi } from '../../src/cli/api-client.ts'
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
const procs: NodeProcess[] = []
afterAll(async () => {
  for (const s of servers) s.close()
  await Promise.all(procs.map(async p => p.kill()))
})

async function startNode (d: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<NodeProcess> {
  const p = new NodeProcess(d, [...LOCAL, ...args], env)
  procs.push(p)
  await p.ready()
  return p
}

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

describe('operator controls as flags and environment variables', () => {
  const LIMIT_FLAGS = ['--upload-mbps', '--download-mbps', '--per-consumer-mbps', '--max-tunnels', '--max-tunnels-per-consumer', '--daily-quota-gb', '--monthly-quota-gb', '--idle-timeout']

  it('flags set the exit\'s limits, over config.toml', async () => {
    const d = await dataDir('[exit]\nupload_mbps = 1\nmax_tunnels = 5\nidle_timeout_seconds = 30\n')
    const node = await startNode(d, [
      '--upload-mbps', '8', '--download-mbps', '16', '--per-consumer-mbps', '4',
      '--max-tunnels', '64', '--max-tunnels-per-consumer', '8',
      '--daily-quota-gb', '2', '--monthly-quota-gb', '50', '--idle-timeout', '90'
    ])
    const s = await node.status()
    expect(s.exit.limits).toEqual({
      maxTunnels: 64,
      maxTunnelsPerConsumer: 8,
      uploadBytesPerSecond: 1_000_000,
      downloadBytesPerSecond: 2_000_000,
      perConsumerBytesPerSecond: 500_000,
      idleTimeoutSeconds: 90
    })
    expect(s.exit.quota.dailyLimit).toBe(2e9)
    expect(s.exit.quota.monthlyLimit).toBe(50e9)
    expect((await node.stop()).code).toBe(0)
  })

  it('so do SPAREBAND_* environment variables', async () => {
    const d = await dataDir()
    const node = await startNode(d, [], {
      SPAREBAND_UPLOAD_MBPS: '8',
      SPAREBAND_DOWNLOAD_MBPS: '16',
      SPAREBAND_PER_CONSUMER_MBPS: '4',
      SPAREBAND_MAX_TUNNELS: '64',
      SPAREBAND_MAX_TUNNELS_PER_CONSUMER: '8',
      SPAREBAND_DAILY_QUOTA_GB: '2',
      SPAREBAND_MONTHLY_QUOTA_GB: '50',
      SPAREBAND_IDLE_TIMEOUT: '90'
    })
    const s = await node.status()
    expect(s.exit.limits).toMatchObject({ maxTunnels: 64, maxTunnelsPerConsumer: 8, uploadBytesPerSecond: 1_000_000, downloadBytesPerSecond: 2_000_000, perConsumerBytesPerSecond: 500_000, idleTimeoutSeconds: 90 })
    expect(s.exit.quota.dailyLimit).toBe(2e9)
    expect((await node.stop()).code).toBe(0)
  })

  it('bad values are usage errors (exit 2) naming the flag', async () => {
    const d = await dataDir()
    for (const flag of LIMIT_FLAGS) {
      const r = await startFails(d, [flag, 'abc'])
      expect(r.code, flag).toBe(2)
      expect(r.stderr, flag).toBe(`spareband: flag ${flag}: "abc" is not a number (write it in decimal, e.g. 16 or 2.5)\n`)
    }
    const cases: Array<[string[], RegExp]> = [
      [['--upload-mbps=-1'], /flag --upload-mbps: exit\.upload_mbps = -1 is invalid/],
      [['--download-mbps=-1'], /flag --download-mbps: exit\.download_mbps = -1 is invalid/],
      [['--per-consumer-mbps=-1'], /flag --per-consumer-mbps: exit\.per_consumer_mbps = -1 is invalid/],
      [['--max-tunnels', '0'], /flag --max-tunnels: exit\.max_tunnels = 0 is invalid: must be at least 1/],
      [['--max-tunnels', '2.5'], /flag --max-tunnels: exit\.max_tunnels = 2\.5 is invalid/],
      [['--max-tunnels-per-consumer', '0'], /flag --max-tunnels-per-consumer: exit\.max_tunnels_per_consumer = 0 is invalid/],
      [['--daily-quota-gb=-2'], /flag --daily-quota-gb: exit\.daily_quota_gb = -2 is invalid/],
      [['--monthly-quota-gb=-2'], /flag --monthly-quota-gb: exit\.monthly_quota_gb = -2 is invalid/],
      [['--idle-timeout', '0'], /flag --idle-timeout: exit\.idle_timeout_seconds = 0 is invalid/]
    ]
    for (const [args, pattern] of cases) {
      const r = await startFails(d, args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr, args.join(' ')).toMatch(pattern)
    }
    const env = await startFails(d, [], { SPAREBAND_IDLE_TIMEOUT: 'soon' })
    expect(env.code).toBe(2)
    expect(env.stderr).toMatch(/environment variable SPAREBAND_IDLE_TIMEOUT: exit\.idle_timeout_seconds = "soon" is invalid/)
  })
})

describe('the exit\'s own addresses', () => {
  it('an --announce address is refused as the exit\'s own (hairpin NAT), checked without dialing', async () => {
    // 203.0.113.9 is a documentation address: never anyone's, and nothing dials it here
    const d = await dataDir()
    const node = await startNode(d, ['--announce', '/ip4/203.0.113.9/tcp/4001'])
    const s = await node.status()
    expect(s.addresses.some((a: string) => a.startsWith('/ip4/203.0.113.9/tcp/4001'))).toBe(true)
    expect(s.exit.ownAddresses).toContain('203.0.113.9')
    expect(s.exit.ownAddresses).toContain('127.0.0.1')
    expect(s.exit.policy).toMatch(/\d+ own address/)
    expect((await node.stop()).code).toBe(0)
  })
})

describe('pause survives a restart', () => {
  it('paused, stopped and started again, the exit is still paused and status warns; resumed, it stays resumed', async () => {
    // with a region: an exit without one is warned about too
    const d = await dataDir('region = "de"\n')
    let node = await startNode(d, [])
    const paused = await callApi<any>(d, '/v1/exit/pause', { method: 'POST', body: {} })
    expect(paused.paused).toBe(true)
    expect((await node.status()).warnings).toEqual([expect.stringMatching(/^the exit is paused \(since .*\): it takes no new tunnels, across restarts, until "spareband resume" \(POST \/v1\/exit\/resume\)$/)])
    expect((await node.stop()).code).toBe(0)

    node = await startNode(d, [])
    let s = await node.status()
    expect(s.exit.paused).toBe(true)
    expect(s.exit.pausedSince).toBe(paused.pausedSince)
    expect(s.warnings).toEqual([expect.stringContaining('the exit is paused')])
    // the CLI's own status shows it too
    const text = await runCli(['status', '--data-dir', d])
    expect(text.stdout).toContain('the exit is paused')
    await callApi(d, '/v1/exit/resume', { method: 'POST', body: {} })
    expect((await node.stop()).code).toBe(0)

    node = await startNode(d, [])
    s = await node.status()
    expect(s.exit.paused).toBe(false)
    expect(s.warnings).toEqual([])
    expect((await node.stop()).code).toBe(0)
  })
})

describe('a listener port in use names the listener and its setting', () => {
  it('SOCKS5, HTTP proxy, control API and the node\'s own listen address', async () => {
    const d = await dataDir()
    const port = await holdPort()
    const cases: Array<[string[], string]> = [
      [['--socks-port', String(port)], `spareband: the SOCKS5 proxy (proxy.socks_port / --socks-port): 127.0.0.1:${port} is in use`],
      [['--http-port', String(port)], `spareband: the HTTP proxy (proxy.http_port / --http-port): 127.0.0.1:${port} is in use`],
      [['--api-port', String(port)], `spareband: the control API (api.port / --api-port): 127.0.0.1:${port} is in use`],
      [['--listen', `/ip4/127.0.0.1/tcp/${port}`], `spareband: the node's listen address (listen / --listen): /ip4/127.0.0.1/tcp/${port} is in use`]
    ]
    for (const [args, line] of cases) {
      const r = await startFails(d, args)
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stderr.trim(), args.join(' ')).toBe(line)
    }
  })

  it('a WebRTC-direct listen address whose UDP port is in use, as the TCP one', async () => {
    const d = await dataDir()
    const udp = createSocket('udp4')
    await new Promise<void>(resolve => udp.bind(0, '127.0.0.1', resolve))
    try {
      const { port } = udp.address()
      const r = await startFails(d, ['--listen', `/ip4/127.0.0.1/udp/${port}/webrtc-direct`])
      expect(r.code).toBe(1)
      // checked before the native WebRTC library tries it: none of its WARN/FATAL lines either
      expect(r.stderr.trim()).toBe(`spareband: the node's listen address (listen / --listen): /ip4/127.0.0.1/udp/${port}/webrtc-direct is in use`)
    } finally {
      udp.close()
    }
  })

  it('a proxy or control API host that is not this machine\'s is a setting error naming the key (exit 2), not the bare system error', async () => {
    // TEST-NET-1: no interface has it, so the bind fails; nothing is sent anywhere
    const d = await dataDir()
    const proxy = await startFails(d, ['--proxy-host', '192.0.2.1'], { SPAREBAND_PROXY_USERNAME: 'u', SPAREBAND_PROXY_PASSWORD: 'p' })
    expect(proxy.code).toBe(2)
    expect(proxy.stderr.trim()).toMatch(/^spareband: the (SOCKS5|HTTP) proxy \(proxy\.host \/ --proxy-host\): 192\.0\.2\.1 is not an address of this machine \(EADDRNOTAVAIL\): give one of its own addresses, 127\.0\.0\.1, or 0\.0\.0\.0 for all of them$/)
    await writeFile(join(d, 'config.toml'), '[api]\nhost = "192.0.2.1"\n')
    const api = await startFails(d, [])
    expect(api.code).toBe(2)
    expect(api.stderr.trim()).toBe('spareband: the control API (api.host): 192.0.2.1 is not an address of this machine (EADDRNOTAVAIL): give one of its own addresses, 127.0.0.1, or 0.0.0.0 for all of them')
  })

  it('a listen address that is not this machine\'s says so, in a line, without libp2p\'s advice about its own options', async () => {
    // TEST-NET-1: no interface has it, so the bind fails; nothing is sent anywhere
    const r = await startFails(await dataDir(), ['--listen', '/ip4/192.0.2.1/tcp/0'])
    expect(r.code).toBe(1)
    expect(r.stderr.trim()).toBe("spareband: the node's listen address (listen / --listen): /ip4/192.0.2.1/tcp/0: listen EADDRNOTAVAIL: address not available 192.0.2.1")
  })
})
