import { describe, it, expect, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { CLI, NodeProcess, runCli, runCliJson, tempDir, waitFor } from '../utils/cli.ts'
import type { ChildProcess } from 'node:child_process'

const procs: ChildProcess[] = []
const nodes: NodeProcess[] = []
afterAll(async () => {
  for (const p of procs) if (p.exitCode == null) p.kill('SIGKILL')
  await Promise.all(nodes.map(async n => n.kill()))
})

describe('spareband testnet', () => {
  it('starts N processes that find each other; a late joiner bootstrapping from any node finds the rest; Ctrl-C stops all', async () => {
    const child = spawn(process.execPath, [CLI, 'testnet', '--nodes', '3', '--regions', 'de,us-ca,jp', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    procs.push(child)
    let out = ''
    let err = ''
    child.stdout.on('data', d => { out += d })
    child.stderr.on('data', d => { err += d })
    const started = Date.now()
    const net = await waitFor(() => { try { return JSON.parse(out) } catch { return undefined } }, { timeoutMs: 60_000, what: `testnet JSON (stderr: ${err})` })
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
    const code = await new Promise(res => child.on('exit', res))
    expect(code).toBe(0)
    for (const n of net.nodes) {
      // every node process is gone and the temporary directory removed
      expect(() => process.kill(n.pid, 0)).toThrow()
      expect(existsSync(n.dataDir)).toBe(false)
    }
  })

  it('its nodes stop on their own when the testnet process is killed outright', async () => {
    const child = spawn(process.execPath, [CLI, 'testnet', '--nodes', '2', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    procs.push(child)
    let out = ''
    child.stdout.on('data', d => { out += d })
    const net = await waitFor(() => { try { return JSON.parse(out) } catch { return undefined } }, { timeoutMs: 60_000, what: 'testnet JSON' })
    child.kill('SIGKILL')
    await waitFor(() => net.nodes.every((n: any) => { try { process.kill(n.pid, 0); return false } catch { return true } }), { timeoutMs: 15_000, what: 'the orphaned nodes to stop' })
  })

  it('rejects a bad region list', async () => {
    const r = await runCli(['testnet', '--regions', 'de,qq'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('"qq" is not a region')
  })
})
