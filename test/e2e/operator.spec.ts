/**
 * What an operator running a node on a home or office line runs into:
 * real `spareband` processes on loopback, real files in a data directory.
 */

import { describe, it, expect, afterAll } from 'vitest'
import { appendFile, chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { spawn } from 'node:child_process'
import { request } from 'node:http'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CLI, NodeProcess, runCli, runCliJson, tempDir, waitFor } from '../utils/cli.ts'
import { callApi } from '../../src/cli/api-client.ts'
import { NODE_RUNTIME_FLAGS } from '../../src/node/runtime-flags.ts'
import type { AddressInfo } from 'node:net'

const procs: NodeProcess[] = []
afterAll(async () => { await Promise.all(procs.map(async p => p.kill())) })

/** These nodes run alone on the spareband network: status warns that they cannot find it (see src/node/alone-warning.ts). */
const ALONE = expect.stringMatching(/^no bootstrap peer and no relay is configured for network "spareband"/)
const LOCAL = ['--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--socks-port', '0', '--http-port', '0']

const exists = async (file: string): Promise<boolean> => stat(file).then(() => true, () => false)

describe('operator', () => {
  it('a second node on a data directory in use is refused, and leaves the running one alone; a lock left by SIGKILL is taken over', async () => {
    const d = await tempDir('sb-op-lock-')
    const { peerId } = await runCliJson(['init', '--data-dir', d, '--json'])
    const first = new NodeProcess(d, LOCAL)
    procs.push(first)
    const info = await first.ready()

    // same identity, same ledger: it must not start
    const second = await runCli(['start', '--data-dir', d, ...LOCAL], { timeoutMs: 20_000 })
    expect(second.signal).toBeNull() // it exited on its own, it was not still running
    expect(second.code).toBe(1)
    expect(second.stderr).toBe(`spareband: ${d} is in use by another spareband node (pid ${first.child.pid}): stop that one first, or give this one another data directory (--data-dir, SPAREBAND_DATA_DIR, or dataDir in createSparebandNode())\n`)
    // and the first is untouched: still found through its api.json, on the same port
    const apiJson = JSON.parse(await readFile(join(d, 'api.json'), 'utf8'))
    expect(apiJson.pid).toBe(first.child.pid)
    expect(apiJson.port).toBe(info.port)
    const status = await runCliJson(['status', '--json', '--data-dir', d])
    expect(status.peerId).toBe(peerId)

    // nor is its key replaced under it
    const key = await readFile(join(d, 'identity.key'))
    const init = await runCli(['init', '--data-dir', d, '--force'])
    expect(init.code).toBe(2)
    expect(init.stderr).toBe(`spareband: a node runs on ${d} (pid ${first.child.pid}): stop it before replacing its identity with --force\n`)
    expect(await readFile(join(d, 'identity.key'))).toEqual(key)

    // killed: its lock stays behind, and the next start takes it over
    await first.kill()
    expect(await exists(join(d, 'node.lock'))).toBe(true)
    const again = new NodeProcess(d, LOCAL)
    procs.push(again)
    await again.ready()
    expect((await again.status()).peerId).toBe(peerId)
    expect(JSON.parse(await readFile(join(d, 'node.lock'), 'utf8')).pid).toBe(again.child.pid)
    // a clean stop gives the directory back
    expect((await again.stop()).code).toBe(0)
    expect(await exists(join(d, 'node.lock'))).toBe(false)

    // so does a start that fails (its control API port is taken)
    const blocker = createServer()
    await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as AddressInfo).port
    const failed = await runCli(['start', '--data-dir', d, ...LOCAL, '--api-port', String(port)], { timeoutMs: 20_000 })
    await new Promise(resolve => blocker.close(resolve))
    expect(failed.code).toBe(1)
    expect(failed.stderr).toBe(`spareband: the control API (api.port / --api-port): 127.0.0.1:${port} is in use\n`)
    expect(await exists(join(d, 'node.lock'))).toBe(false)
  })

  it('a bad listen, announce or bootstrap address stops start with exit 2 and one line naming where it came from, the key and the entry', async () => {
    const d = await tempDir('sb-op-addr-')
    await runCliJson(['init', '--data-dir', d, '--json'])
    const peer = '12D3KooWPinfe9zTC2TjJTABrQriM6fg3Bedq16DWYs6Apu71jox'
    const cases: Array<[string[], string, NodeJS.ProcessEnv?]> = [
      // threw from inside libp2p: a stack trace, exit 1
      [['--announce', 'garbage'], 'flag --announce: announce = ["garbage"] is invalid: "garbage" is not a multiaddr (String multiaddr must start with "/")'],
      // the multiaddr parser's words alone, exit 1
      [['--bootstrap', 'garbage'], 'flag --bootstrap: network.bootstrap = ["garbage"] is invalid: "garbage" is not a multiaddr (String multiaddr must start with "/")'],
      // started, and never dialled it: libp2p's bootstrap and the redials skip an address without a peer id
      [['--bootstrap', '/ip4/127.0.0.1/tcp/4001'], 'flag --bootstrap: network.bootstrap = ["/ip4/127.0.0.1/tcp/4001"] is invalid: "/ip4/127.0.0.1/tcp/4001" does not end in /p2p/<peer id>, so no one would dial it'],
      [[], 'environment variable SPAREBAND_BOOTSTRAP: network.bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/nope"] is invalid: "/ip4/127.0.0.1/tcp/4001/p2p/nope" names no valid peer id ("nope": Please pass a multibase decoder for strings that do not start with "1" or "Q")', { SPAREBAND_BOOTSTRAP: '/ip4/127.0.0.1/tcp/4001/p2p/nope' }],
      // started, and never listened through it: the relay keeper skips a relay without a peer id
      [['--listen', '/ip4/127.0.0.1/tcp/4001/p2p-circuit'], 'flag --listen: listen = ["/ip4/127.0.0.1/tcp/4001/p2p-circuit"] is invalid: "/ip4/127.0.0.1/tcp/4001/p2p-circuit" names a relay without its peer id: write "<relay multiaddr>/p2p/<peer id>/p2p-circuit"'],
      // "" is the multiaddr "/": libp2p's "Some configured addresses failed to be listened on" and its stack trace, exit 1
      [['--listen', ''], 'flag --listen: listen = [""] is invalid: "" is an empty multiaddr: name an address, or leave the entry out'],
      // started, announcing only /p2p/<id>
      [['--announce', ''], 'flag --announce: announce = [""] is invalid: "" is an empty multiaddr: name an address, or leave the entry out'],
      // no transport of the node listens on it: exit 1 alone, left out without a word beside a TCP address
      [['--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '/ip4/127.0.0.1/tcp/48010/ws'], 'flag --listen: listen = ["/ip4/127.0.0.1/tcp/0","/ip4/127.0.0.1/tcp/48010/ws"] is invalid: "/ip4/127.0.0.1/tcp/48010/ws" is no address this node can listen on: the node listens on TCP (/ip4/0.0.0.0/tcp/4001), WebRTC Direct (/ip4/0.0.0.0/udp/4001/webrtc-direct), WebRTC (/webrtc) and circuit relays (/p2p-circuit, or <relay multiaddr>/p2p/<peer id>/p2p-circuit)']
    ]
    for (const [flags, line, env] of cases) {
      const r = await runCli(['start', '--data-dir', d, '--api-port', '0', '--socks-port', '0', '--http-port', '0', ...(flags.includes('--listen') ? [] : ['--listen', '/ip4/127.0.0.1/tcp/0']), ...flags], { env, timeoutMs: 15_000 })
      expect(r.code, flags.join(' ')).toBe(2)
      expect(r.stderr).toBe(`spareband: ${line}\n`)
    }
    // and in config.toml, named by the file
    await writeFile(join(d, 'config.toml'), `[network]\nbootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/${peer}", "/dns4/boot.example.org/tcp/4001"]\n`)
    const r = await runCli(['start', '--data-dir', d, ...LOCAL], { timeoutMs: 15_000 })
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`spareband: ${join(d, 'config.toml')}: network.bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/${peer}","/dns4/boot.example.org/tcp/4001"] is invalid: "/dns4/boot.example.org/tcp/4001" does not end in /p2p/<peer id>, so no one would dial it\n`)
  })

  it('start --config naming a file that is not there exits 2 naming it, instead of running on the defaults without the operator\'s limits', async () => {
    const d = await tempDir('sb-op-config-')
    await runCliJson(['init', '--data-dir', d, '--json'])
    const file = join(d, 'exit-limits.toml')
    await writeFile(file, '[exit]\nmax_tunnels = 7\ndaily_quota_gb = 2\n')
    const typo = join(d, 'exit-limit.toml')
    const r = await runCli(['start', '--data-dir', d, ...LOCAL, '--config', typo], { timeoutMs: 15_000 })
    expect(r.signal).toBeNull()
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`spareband: ${typo}: no such config file (named by --config)\n`)
    // the right name: its limits are the node's
    const node = new NodeProcess(d, [...LOCAL, '--config', file])
    procs.push(node)
    await node.ready()
    const status = await node.status()
    expect(status.exit.limits.maxTunnels).toBe(7)
    expect(status.exit.quota.dailyLimit).toBe(2e9)
    expect((await node.stop()).code).toBe(0)
  })

  it('an empty SPAREBAND_DATA_DIR means ~/.spareband, not the working directory; an empty --data-dir is refused', async () => {
    const home = await tempDir('sb-op-home-')
    const cwd = await tempDir('sb-op-cwd-')
    const r = await runCli(['init', '--json'], { env: { SPAREBAND_DATA_DIR: '', HOME: home }, cwd })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout).identityFile).toBe(join(home, '.spareband', 'identity.key'))
    expect(await exists(join(home, '.spareband', 'identity.key'))).toBe(true)
    expect(await readdir(cwd)).toEqual([])
    const empty = await runCli(['init', '--data-dir', ''], { cwd })
    expect(empty.code).toBe(2)
    expect(empty.stderr).toBe('spareband: --data-dir is empty: name a directory, or leave the flag out for $SPAREBAND_DATA_DIR or ~/.spareband\n')
    expect(await readdir(cwd)).toEqual([])
  })

  it('the start line says where the SOCKS5 and HTTP proxies listen', async () => {
    const d = await tempDir('sb-op-ports-')
    await runCliJson(['init', '--data-dir', d, '--json'])
    const node = new NodeProcess(d, LOCAL)
    procs.push(node)
    await node.ready()
    const { proxy, api } = await node.status()
    // api.json can come before the start lines reach us through the pipe
    const line = await waitFor(() => node.output.split('\n').find(l => l.includes('info  spareband node started')), { what: 'the start line' })
    expect(line).toContain(` api=${api} socks=127.0.0.1:${proxy.socksPort} http=127.0.0.1:${proxy.httpPort} `)
    expect((await node.stop()).code).toBe(0)
  })

  it('spareband pause and resume pause the running exit and resume it, kept in exit-state.json; resume says what still holds it back', async () => {
    const d = await tempDir('sb-op-pause-')
    await runCliJson(['init', '--data-dir', d, '--json'])
    // a sharing schedule that leaves out today (local time, as the node reads it)
    const days = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']
    const tomorrow = days[(new Date().getDay() + 1) % 7]
    const node = new NodeProcess(d, [...LOCAL, '--schedule', `${tomorrow} all`])
    procs.push(node)
    await node.ready()

    const paused = await runCli(['pause', '--data-dir', d])
    expect(paused.code).toBe(0)
    const status = await node.status()
    expect(status.exit.paused).toBe(true)
    expect(paused.stdout).toBe(`exit paused since ${status.exit.pausedSince}: it takes no new tunnels, across restarts, until "spareband resume"; the 0 tunnel(s) open now carry on\n`)
    expect(JSON.parse(await readFile(join(d, 'exit-state.json'), 'utf8'))).toEqual({ paused: true, pausedSince: status.exit.pausedSince })
    expect(status.warnings).toContain(`the exit is paused (since ${status.exit.pausedSince}): it takes no new tunnels, across restarts, until "spareband resume" (POST /v1/exit/resume)`)

    const resumed = await runCli(['resume', '--data-dir', d])
    expect(resumed.code).toBe(0)
    expect(resumed.stdout).toBe('exit resumed, but it takes no new tunnels yet: it is outside its sharing schedule\n')
    expect((await node.status()).exit.paused).toBe(false)
    expect(JSON.parse(await readFile(join(d, 'exit-state.json'), 'utf8')).paused).toBe(false)
    const json = await runCliJson(['resume', '--json', '--data-dir', d])
    expect(json.paused).toBe(false)
    expect(json.withinSchedule).toBe(false)
    expect((await node.stop()).code).toBe(0)
    // no node: the usual clear line
    const none = await runCli(['pause', '--data-dir', d])
    expect(none.code).toBe(1)
    expect(none.stderr).toBe(`spareband: no running node found for ${d} (no api.json); start one with "spareband start --data-dir ${d}"\n`)
  })

  it('SIGHUP (the terminal or ssh session closing) stops the node cleanly: exit 0, api.json and node.lock gone', async () => {
    const d = await tempDir('sb-op-hup-')
    await runCliJson(['init', '--data-dir', d, '--json'])
    const node = new NodeProcess(d, LOCAL)
    procs.push(node)
    await node.ready()
    const stopped = await node.stop('SIGHUP')
    expect(stopped.code).toBe(0)
    expect(node.output).toContain('info  stopping signal=SIGHUP')
    expect(node.output).toMatch(/info {2}stopped\n$/)
    expect(await exists(join(d, 'api.json'))).toBe(false)
    expect(await exists(join(d, 'node.lock'))).toBe(false)
  })

  it('a signal while the node is still loading or starting stops it cleanly too: exit 0, nothing left behind', async () => {
    const d = await tempDir('sb-op-early-')
    await runCliJson(['init', '--data-dir', d, '--json'])
    // before the node is made (loading libp2p; not before node has run our first line, which no
    // handler can cover), while it starts, and just after: it died by the signal
    // (143 or 130, no line logged), said "The node is not started" (exit 1), or ran on for good
    for (const [signal, delayMs] of [['SIGTERM', 300], ['SIGINT', 500], ['SIGTERM', 800], ['SIGTERM', 1200]] as const) {
      const node = new NodeProcess(d, LOCAL)
      procs.push(node)
      await sleep(delayMs)
      const stopped = await node.stop(signal)
      expect([stopped.code, node.output], `${signal} after ${delayMs} ms`).toEqual([0, expect.stringContaining(`info  stopping signal=${signal}`)])
      expect(node.output).toMatch(/info {2}stopped\n$/)
      expect(stopped.ms).toBeLessThan(5000)
      expect(await exists(join(d, 'api.json'))).toBe(false)
      expect(await exists(join(d, 'node.lock'))).toBe(false)
    }
  })

  it('providers and probe with a --region that is not one exit 2 at once, whether or not a node runs', async () => {
    const d = await tempDir('sb-op-region-')
    // one line, as every other error: the flag, the value and what a region is, without the help hint (the flag is right, its value is not)
    const message = 'spareband: flag --region: "xx" is not a region: an ISO 3166-1 alpha-2 country code, optionally with a subdivision (e.g. de, us-ca)\n'
    for (const args of [['providers', '--region', 'xx'], ['probe', '--region', 'xx', 'http://example.org/']]) {
      const r = await runCli([...args, '--data-dir', d])
      expect(r.code, args[0]).toBe(2)
      expect(r.stderr).toBe(message)
    }
  })

  it('an identity.key or api-token others can read (a copy restored from a backup) is a warning at start and in status, with the chmod that fixes it', async () => {
    const d = await tempDir('sb-op-keymode-')
    await runCliJson(['init', '--data-dir', d, '--region', 'de', '--json'])
    const key = join(d, 'identity.key')
    await chmod(key, 0o644)
    const node = new NodeProcess(d, LOCAL)
    procs.push(node)
    await node.ready()
    const warning = `${key} can be read by other users (mode 0644): whoever reads it can sign receipts as this node and spend its credits; run "chmod 600 ${key}"`
    await waitFor(() => node.output.includes(`warn  ${warning}\n`), { what: 'the warning in the start log' })
    expect((await node.status()).warnings).toEqual([warning, ALONE])
    await chmod(key, 0o600)
    expect((await node.status()).warnings).toEqual([ALONE])
    // api-token, which opens the whole control API, likewise (it was made 0600 and never looked at again)
    const token = join(d, 'api-token')
    await chmod(token, 0o640)
    expect((await node.status()).warnings).toEqual([`${token} can be read by other users (mode 0640): whoever reads it controls this node through its control API (pause, resume, receipts, metrics); run "chmod 600 ${token}"`, ALONE])
    await chmod(token, 0o600)
    expect((await node.status()).warnings).toEqual([ALONE])
    expect((await node.stop()).code).toBe(0)
  })

  it('a config.toml (or --config file) with proxy.password that others can read is a warning at start and in status, with the chmod that fixes it', async () => {
    const d = await tempDir('sb-op-configmode-')
    await runCliJson(['init', '--data-dir', d, '--region', 'de', '--json'])
    const file = join(d, 'config.toml')
    await appendFile(file, '\n[proxy]\npassword = "s3cret"\n')
    await chmod(file, 0o644)
    const warning = (f: string, mode: string): string => `${f} holds proxy.password and can be read by other users (mode ${mode}): whoever reads it can use this node's proxies and spend its credits; run "chmod 600 ${f}"`
    const node = new NodeProcess(d, LOCAL)
    procs.push(node)
    await node.ready()
    await waitFor(() => node.output.includes(`warn  ${warning(file, '0644')}\n`), { what: 'the warning in the start log' })
    expect((await node.status()).warnings).toEqual([warning(file, '0644'), ALONE])
    await chmod(file, 0o600)
    expect((await node.status()).warnings).toEqual([ALONE])
    expect((await node.stop()).code).toBe(0)
    // a file named by --config is the one watched; one others can read but without a password is no concern
    const other = join(d, 'other.toml')
    await writeFile(other, 'region = "de"\n[proxy]\npassword = "s3cret"\n', { mode: 0o640 })
    await chmod(other, 0o640)
    await chmod(file, 0o644)
    await writeFile(file, 'region = "de"\n')
    const again = new NodeProcess(d, [...LOCAL, '--config', other])
    procs.push(again)
    await again.ready()
    expect((await again.status()).warnings).toEqual([warning(other, '0640'), ALONE])
    expect((await again.stop()).code).toBe(0)
  })

  it('the start log says where the node listens as "listening", and the addresses it announces instead as "announced"', async () => {
    const d = await tempDir('sb-op-announce-')
    const { peerId } = await runCliJson(['init', '--data-dir', d, '--region', 'de', '--json'])
    const announced = `/ip4/127.0.0.1/tcp/48099/p2p/${peerId as string}`
    const node = new NodeProcess(d, [...LOCAL, '--announce', '/ip4/127.0.0.1/tcp/48099'])
    procs.push(node)
    await node.ready()
    await waitFor(() => /info\s+announced /.test(node.output), { what: 'the announced line in the start log' })
    // it said "listening address=<the announced address>", where nothing listens
    const listening = [...node.output.matchAll(/info\s+listening address=(\S+)/g)].map(m => m[1])
    expect(listening).toHaveLength(1)
    const m = new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/(\\d+)/p2p/${peerId as string}$`).exec(listening[0])
    expect(m, listening[0]).not.toBeNull()
    expect(m![1]).not.toBe('48099')
    // the node listens there
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(m![1]), '127.0.0.1', () => { socket.destroy(); resolve() })
      socket.once('error', reject)
    })
    expect([...node.output.matchAll(/info\s+announced address=(\S+)/g)].map(m => m[1])).toEqual([announced])
    expect((await node.status()).addresses).toEqual([announced])
    expect((await node.stop()).code).toBe(0)
  })

  it('an exit without a region, as init without --region leaves it, is warned about at start and in status; with one, or with --no-supply, it is not', async () => {
    const d = await tempDir('sb-op-noregion-')
    await runCliJson(['init', '--data-dir', d, '--json'])
    const warning = 'the exit has no region, so it is not advertised in the DHT and consumers asking for a region never pick it: set region (region = "de" in config.toml, --region de or SPAREBAND_REGION), or turn the exit off with --no-supply'
    const node = new NodeProcess(d, LOCAL)
    procs.push(node)
    await node.ready()
    // api.json can come before the start lines reach us through the pipe
    await waitFor(() => node.output.includes(`warn  ${warning}\n`), { what: 'the warning in the start log' })
    // a node on the spareband network with no bootstrap peer and no peer is told it stays alone
    expect(node.output).toContain('warn  no bootstrap peer and no relay is configured for network "spareband", and no peer is connected')
    const status = await node.status()
    expect(status.warnings).toEqual([warning, ALONE])
    expect(status.routing.advertising.published).toBe(false)
    expect((await node.stop()).code).toBe(0)
    for (const flags of [['--region', 'de'], ['--no-supply']]) {
      const again = new NodeProcess(d, [...LOCAL, ...flags])
      procs.push(again)
      await again.ready()
      expect((await again.status()).warnings, flags.join(' ')).toEqual([ALONE])
      expect((await again.stop()).code).toBe(0)
    }
  })

  it('one port for the control API and a proxy is refused before anything binds (exit 2, both keys named), not "in use" by the node itself', async () => {
    const d = await tempDir('sb-op-ownports-')
    await runCliJson(['init', '--data-dir', d, '--region', 'de', '--json'])
    const r = await runCli(['start', '--data-dir', d, '--listen', '/ip4/127.0.0.1/tcp/0', '--http-port', '0', '--socks-port', '45123', '--api-port', '45123'], { timeoutMs: 15_000 })
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('spareband: flag --api-port: api.port = 45123 is invalid: proxy.socks_port is 45123 (on 127.0.0.1) too; the control API, the proxies and the TCP listen addresses each need a port of their own (0 picks a free one)\n')
  })

  it('Ctrl-C on a testnet (SIGINT to its whole process group, as a terminal sends it) stops every node cleanly, not as a second signal', async () => {
    const dir = await tempDir('sb-op-testnet-')
    // a process group of its own, as a shell gives a foreground job
    const child = spawn(process.execPath, [CLI, 'testnet', '--nodes', '2', '--dir', dir, '--json'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    let out = ''
    let err = ''
    child.stdout.on('data', d => { out += d })
    child.stderr.on('data', d => { err += d })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      const net = await waitFor(() => { try { return JSON.parse(out) } catch { return undefined } }, { timeoutMs: 60_000, what: `testnet JSON (stderr: ${err})` })
      process.kill(-child.pid!, 'SIGINT')
      expect(await exited).toBe(0)
      for (const n of net.nodes) {
        const log = await readFile(join(n.dataDir, 'node.log'), 'utf8')
        expect(log, n.dataDir).not.toContain('second signal')
        // a peer's disconnect may be logged between the two
        expect(log).toMatch(/info {2}stopping signal=SIGTERM\n(?:.*\n)*?.*info {2}stopped\n$/)
        expect(await exists(join(n.dataDir, 'api.json'))).toBe(false)
        expect(await exists(join(n.dataDir, 'node.lock'))).toBe(false)
      }
    } finally {
      if (child.exitCode == null) process.kill(-child.pid!, 'SIGKILL')
    }
  }, 90_000)

  it('a node whose log reader goes away (spareband start | tee, stopped) keeps running, and still stops cleanly', async () => {
    const d = await tempDir('sb-op-epipe-')
    await runCliJson(['init', '--data-dir', d, '--region', 'de', '--json'])
    const child = spawn(process.execPath, [...NODE_RUNTIME_FLAGS, CLI, 'start', '--data-dir', d, ...LOCAL], { stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    try {
      await waitFor(async () => JSON.parse(await readFile(join(d, 'api.json'), 'utf8')).pid === child.pid, { what: 'api.json' })
      // the reader goes: the node's next log line meets a closed pipe
      child.stdout.destroy()
      child.stderr.destroy()
      const { proxy } = await callApi(d, '/v1/status')
      // a client the proxy refuses is a log line (warn proxy refused a client)
      const status = await new Promise<number | undefined>(resolve => {
        request({ host: '127.0.0.1', port: proxy.httpPort, method: 'GET', path: 'http://example.org/', headers: { 'proxy-authorization': `Basic ${Buffer.from('region-xx:').toString('base64')}` } }, res => { res.resume(); resolve(res.statusCode) })
          .on('error', () => resolve(undefined)).end()
      })
      expect(status).toBe(400)
      await new Promise(resolve => setTimeout(resolve, 500))
      expect(child.exitCode).toBeNull()
      expect((await callApi(d, '/v1/status')).peerId).toMatch(/^12D3KooW/)
      // its clean stop logs too
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
      expect(await exists(join(d, 'api.json'))).toBe(false)
      expect(await exists(join(d, 'node.lock'))).toBe(false)
    } finally {
      if (child.exitCode == null && child.signalCode == null) child.kill('SIGKILL')
    }
  })
})
