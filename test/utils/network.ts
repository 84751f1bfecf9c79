/**
 * Spawns `spareband` node processes for end-to-end tests: init, optional
 * config.toml, start on loopback with free ports, wait until ready.
 */

import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { NodeProcess, tempDir, waitFor } from './cli.ts'
import { createIdentity } from '../../src/node/identity.ts'

const exec = promisify(execFile)

export const LOOPBACK = ['--network', 'local', '--api-port', '0', '--socks-port', '0', '--http-port', '0']

export interface SpawnedNode {
  proc: NodeProcess
  dataDir: string
  peerId: string
  addresses: string[]
  socksPort: number
  httpPort: number
  status: () => Promise<any>
}

export async function spawnNode (options: { region?: string, args?: string[], config?: string, listen?: string[] } = {}): Promise<SpawnedNode> {
  const dataDir = await tempDir('sb-e2e-')
  // the identity is made in-process: `spareband init` itself is tested in cli.spec.ts
  await createIdentity(dataDir)
  await writeFile(join(dataDir, 'config.toml'), (options.region != null ? `region = "${options.region}"\n` : '') + (options.config ?? ''))
  const listen = (options.listen ?? ['/ip4/127.0.0.1/tcp/0']).flatMap(l => ['--listen', l])
  const proc = new NodeProcess(dataDir, [...LOOPBACK, ...listen, ...(options.args ?? [])])
  await proc.ready()
  const s = await proc.status()
  return { proc, dataDir, peerId: s.peerId, addresses: s.addresses, socksPort: s.proxy?.socksPort, httpPort: s.proxy?.httpPort, status: async () => proc.status() }
}

/** Waits until `node` has identified an exit (tunnel protocol + agent) for each peer id. */
export async function waitForPeers (node: SpawnedNode, peerIds: string[], timeoutMs = 30_000): Promise<void> {
  await waitFor(async () => {
    const peers = await node.proc.peers()
    const known = new Set(peers.filter((p: any) => p.agent != null).map((p: any) => p.peerId))
    return peerIds.every(id => known.has(id))
  }, { timeoutMs, what: `peers ${peerIds.join(', ')}` })
}

export interface CurlResult { code: number, stdout: Buffer, stderr: string, ms: number }

/** Runs the real curl. Never points it anywhere but 127.0.0.1. */
export async function curl (args: string[], timeoutMs = 60_000): Promise<CurlResult> {
  const t = Date.now()
  try {
    const { stdout, stderr } = await exec('curl', ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 })
    return { code: 0, stdout, stderr: stderr.toString(), ms: Date.now() - t }
  } catch (err: any) {
    return { code: err.code ?? -1, stdout: err.stdout ?? Buffer.alloc(0), stderr: err.stderr?.toString() ?? String(err), ms: Date.now() - t }
  }
}

/**
 * An exit in region de that may reach `exitPorts` on this machine, and a
 * consumer in jp (no exit of its own) that has identified it.
 */
export async function exitAndConsumer (exitPorts: number[]): Promise<{ exit: SpawnedNode, consumer: SpawnedNode }> {
  const exit = await spawnNode({ region: 'de', args: ['--allow-private-targets', '--exit-ports', exitPorts.join(',')] })
  const consumer = await spawnNode({ region: 'jp', args: ['--no-supply', '--bootstrap', exit.addresses[0]] })
  await waitForPeers(consumer, [exit.peerId])
  return { exit, consumer }
}
