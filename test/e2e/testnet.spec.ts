import { describe, it, expect, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CLI, NodeProcess, runCli, runCliJson, tempDir, waitFor } from '../utils/cli.ts'
import type { ChildProcess } from 'node:child_process'

const procs: ChildProcess[] = []
const nodes: NodeProcess[] = []
afterAll(async () => {
  for (const p of procs) if (p.exitCode == null) p.kill('SIGKILL')
  await Promise.all(nodes.map(async n => n.kill()))
})

/** A `spareband testnet` process, its output as it comes, and (with --json) the nodes it printed once all are up. */
interface Testnet {
  child: ChildProcess
  out: () => string
  err: () => string
  json: () => Promise<any>
}

function startTestnet (args: string[], env: NodeJS.ProcessEnv = process.env): Testnet {
  const child = spawn(process.execPath, [CLI, 'testnet', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env })
  procs.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', d => { out += d })
  child.stderr!.on('data', d => { err += d })
  return {
    child,
    out: () => out,
    err: () => err,
    json: async () => waitFor(() => { try { return JSON.parse(out) } catch { return undefined } }, { timeoutMs: 60_000, what: `testnet JSON (stderr: ${err})` })
  }
}

async function exitCodeOf (child: ChildProcess): Promise<number | null> {
  return new Promise(resolve => child.on('exit', resolve))
}

describe('spareband testnet', () => {
  it('starts N processes that find each other; a late joiner bootstrapping from any node finds the rest; Ctrl-C stops all', async () => {
    const started = Date.now()
    const testnet = startTestnet(['--nodes', '3', '--regions', 'de,us-ca,jp', '--json'])
    const { child } = testnet
    const net = await testnet.json()
    expect(net.nodes).toHaveLength(3)
    expect(net.nodes.map((n: any) => n.region)).toEqual(['de', 'us-ca', 'jp'])
    expect(new Set(net.nodes.map((n: any) => n.peerId)).size).toBe(3)
    for (const n of net.nodes) expect(n.api).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)

    // every node is connected to at least 2 others within 30 s
    await waitFor(async () => {
      for (const n of net.nodes) {
        const peers = await runCliJson(['peers', '--json', '--data-dir', n.dataDir])
        if (peers.length < 2) return false
      }
      return true
    }, { timeoutMs: 30_000, what: 'every testnet node to see 2 peers' })
    expect(Date.now() - started).toBeLessThan(90_000)

    // a node that only knows the last testnet node finds the others through the DHT
    const late = await tempDir('sb-late-')
    await runCliJson(['init', '--data-dir', late, '--json'])
    const last = net.nodes[2]
    const lateNode = new NodeProcess(late, ['--network', 'local', '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--socks-port', '0', '--http-port', '0', '--bootstrap', last.addresses[0]])
    nodes.push(lateNode)
    await lateNode.ready()
    const seen = await waitFor(async () => {
      const peers = await runCliJson(['peers', '--json', '--data-dir', late])
      return peers.length >= 3 ? peers : undefined
    }, { timeoutMs: 30_000, what: 'the late node to find all 3' })
    expect(seen.map((p: any) => p.peerId).sort()).toEqual(net.nodes.map((n: any) => n.peerId).sort())
    await lateNode.stop()

    child.kill('SIGINT')
    expect(await exitCodeOf(child)).toBe(0)
    for (const n of net.nodes) {
      // every node process is gone and the temporary directory removed
      expect(() => process.kill(n.pid, 0)).toThrow()
      expect(existsSync(n.dataDir)).toBe(false)
    }
  })

  it('suggests a URL its exits allow: the local one when they take only other ports and private targets', async () => {
    const { child, out } = startTestnet(['--nodes', '2', '--allow-private-targets', '--exit-ports', '18080,18081'])
    await waitFor(() => out().includes('Ctrl-C stops it'), { timeoutMs: 60_000, what: 'the testnet banner' })
    await waitFor(() => out().includes('npx spareband dashboard'), { timeoutMs: 5_000, what: 'the try: lines' })
    expect(out()).toMatch(/npx spareband probe --region de http:\/\/127\.0\.0\.1:18080\/ /)
    expect(out()).toMatch(/curl --proxy socks5h:\/\/region-de:x@127\.0\.0\.1:\d+ http:\/\/127\.0\.0\.1:18080\//)
    expect(out()).not.toContain('example.org')
    // where the nodes' logs are, and that a temporary testnet takes them with it
    expect(out()).toContain('each node logs to node.log in its data directory (removed with it when the testnet stops: --dir DIR keeps them)')
    child.kill('SIGINT')
    expect(await exitCodeOf(child)).toBe(0)
  })

  it('one node: suggests nothing that needs an exit other than itself, and says how to get one', async () => {
    const { child, out } = startTestnet(['--nodes', '1'])
    await waitFor(() => out().includes('run --nodes 2 or more'), { timeoutMs: 60_000, what: 'the banner and its advice' })
    expect(out()).toContain('npx spareband peers --data-dir ')
    expect(out()).toContain('npx spareband dashboard --data-dir ')
    expect(out()).not.toMatch(/probe|curl|providers/)
    expect(out()).toContain('one node tunnels through no exit (it never uses its own): run --nodes 2 or more to try the proxies')
    child.kill('SIGINT')
    expect(await exitCodeOf(child)).toBe(0)
  })

  it('--keep-going: a node killed once all are up is reported and the others go on, until Ctrl-C stops them', async () => {
    const testnet = startTestnet(['--nodes', '3', '--keep-going', '--json'])
    const { child, err } = testnet
    const net = await testnet.json()
    process.kill(net.nodes[1].pid, 'SIGKILL')
    await waitFor(() => err().includes('the other nodes go on (--keep-going) running=2'), { timeoutMs: 10_000, what: 'the testnet to report node 1 and go on' })
    expect(err()).toMatch(/error testnet node 1 exited signal=SIGKILL/)
    expect(child.exitCode).toBeNull()
    // the others still answer
    for (const i of [0, 2]) expect((await runCliJson(['status', '--json', '--data-dir', net.nodes[i].dataDir])).peerId).toBe(net.nodes[i].peerId)
    child.kill('SIGINT')
    expect(await exitCodeOf(child)).toBe(0)
    expect(err()).toContain('testnet stopped nodes=3')
    for (const n of net.nodes) expect(() => process.kill(n.pid, 0)).toThrow()
  })

  it('its nodes stop on their own when the testnet process is killed outright', async () => {
    const testnet = startTestnet(['--nodes', '2', '--json'])
    const net = await testnet.json()
    testnet.child.kill('SIGKILL')
    await waitFor(() => net.nodes.every((n: any) => { try { process.kill(n.pid, 0); return false } catch { return true } }), { timeoutMs: 15_000, what: 'the orphaned nodes to stop' })
  })

  it('checks what it passes to the nodes before it starts any: a bad --exit-ports is the flag\'s own error, exit 2', async () => {
    // a temporary directory of the test's own: the testnet makes nothing in it
    const tmp = await tempDir('sb-testnet-tmp-')
    const r = await runCli(['testnet', '--exit-ports', '99999', '--nodes', '2'], { env: { TMPDIR: tmp } })
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toMatch(/^spareband: flag --exit-ports: exit\.allowed_ports = \["99999"\] is invalid: port 99999 .*out of range 1-65535/)
    expect(r.stderr).not.toContain('testnet node')
    expect(await readdir(tmp)).toEqual([])
  })

  it('a node that fails to start: its log\'s last lines, its error among them, before the testnet stops (exit 1)', async () => {
    const dir = await tempDir('sb-testnet-dir-')
    // node 0's own config.toml, which only the node reads
    await mkdir(join(dir, 'node-0'))
    await writeFile(join(dir, 'node-0', 'config.toml'), '[exit]\nallowed_ports = []\n')
    const r = await runCli(['testnet', '--nodes', '2', '--dir', dir], { timeoutMs: 60_000 })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/error testnet node 0 exited .*code=2/)
    expect(r.stderr).toContain('config.toml: exit.allowed_ports = [] is invalid: no ports')
    // --dir stays: its log is where the error says
    const log = join(dir, 'node-0', 'node.log')
    expect(r.stderr).toContain(`log=${log}`)
    expect(await readFile(log, 'utf8')).toContain('is invalid: no ports')
  })

  it('a node that dies after start: its last lines are shown, and the temporary directory removed is not named as where to look', async () => {
    const tmp = await tempDir('sb-testnet-tmp-')
    const testnet = startTestnet(['--nodes', '2', '--json'], { ...process.env, TMPDIR: tmp })
    const net = await testnet.json()
    const exited = exitCodeOf(testnet.child)
    process.kill(net.nodes[1].pid, 'SIGKILL')
    expect(await exited).toBe(1)
    const err = testnet.err()
    expect(err).toMatch(/error testnet node 1 exited .*signal=SIGKILL/)
    // the node's own log, up to its end
    expect(err).toMatch(/node 1 \| .*spareband node started/)
    // no log file to look at: it went with the temporary directory
    expect(err).not.toMatch(/ log=/)
    expect(err).toContain('testnet --dir DIR keeps them')
    expect(await readdir(tmp)).toEqual([])
  })

  it('refuses --data-dir, which names one node\'s directory (it was ignored, and the nodes went to a temporary one)', async () => {
    const r = await runCli(['testnet', '--data-dir', await tempDir('sb-tn-dd-')])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('testnet puts its nodes\' data directories under --dir DIR')
  })

  it('refuses a --dir that is a file, or under one, or empty, with one line naming the flag (it was mkdir\'s "EEXIST: file already exists")', async () => {
    const file = join(await tempDir('sb-tn-file-'), 'a-file')
    await writeFile(file, '')
    const r = await runCli(['testnet', '--dir', file])
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`spareband: --dir: ${file} exists and is not a directory; name a directory for the node's data (a missing one is created)\n`)
    const under = await runCli(['testnet', '--dir', join(file, 'sub')])
    expect(under.code).toBe(2)
    expect(under.stderr).toBe(`spareband: --dir: ${join(file, 'sub')} is under ${file}, which exists and is not a directory; name a directory for the node's data (a missing one is created)\n`)
    const empty = await runCli(['testnet', '--dir', ''])
    expect(empty.code).toBe(2)
    expect(empty.stderr).toBe('spareband: --dir is empty: name a directory, or leave the flag out for a temporary one\n')
  })

  it('a second testnet on a --dir in use is refused, and leaves the running nodes\' logs alone', async () => {
    const dir = await tempDir('sb-tn-twice-')
    const first = startTestnet(['--nodes', '1', '--dir', dir, '--json'])
    const net = await first.json()
    const log = join(dir, 'node-0', 'node.log')
    await waitFor(async () => (await readFile(log, 'utf8')).includes('spareband node started'), { what: 'the first node\'s start in its log' })
    const before = await readFile(log, 'utf8')
    // a testnet's node has no config.toml: the start line said config=<its path> all the same
    expect(before).toContain(` config="none (no ${join(dir, 'node-0', 'config.toml')})"\n`)
    const second = await runCli(['testnet', '--nodes', '1', '--dir', dir])
    expect(second.code).toBe(1)
    expect(second.stderr).toContain(`${join(dir, 'node-0')} is in use by the node with pid ${net.nodes[0].pid as number} (another testnet on this --dir?)`)
    // the running node's log is as it was (it was opened for writing, emptied, and then had NULs where the node wrote on)
    const after = await readFile(log, 'utf8')
    expect(after.startsWith(before)).toBe(true)
    expect(after).not.toContain('\0')
    first.child.kill('SIGINT')
    expect(await exitCodeOf(first.child)).toBe(0)
  })

  it('rejects a bad region list', async () => {
    const r = await runCli(['testnet', '--regions', 'de,qq'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('"qq" is not a region')
  })
})
