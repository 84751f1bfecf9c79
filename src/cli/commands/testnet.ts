/**
 * `spareband testnet`: N nodes as separate processes on loopback. The first
 * is the bootstrap peer of the others; all of them run on the `local`
 * network definition (private addresses allowed in the DHT, no IP
 * colocation penalty). Ctrl-C stops them all.
 */

import { spawn } from 'node:child_process'
import { mkdtemp, mkdir, rm, open, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { InvalidArgumentError } from 'commander'
import { loadOrCreateIdentity } from '../../node/identity.ts'
import { readApiInfo } from '../../node/control-api.ts'
import { isValidRegion, normalizeRegion } from '../../routing/regions.ts'
import { callApi } from '../api-client.ts'
import { UsageError } from '../errors.ts'
import { formatTable, log, printJson } from '../output.ts'
import { NODE_RUNTIME_FLAGS } from '../../node/runtime-flags.ts'
import type { ChildProcess } from 'node:child_process'
import type { Command } from 'commander'

export interface TestnetNode {
  index: number
  peerId: string
  region: string
  dataDir: string
  api: string
  socksPort?: number
  httpPort?: number
  addresses: string[]
  pid: number
}

function parseNodes (value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new InvalidArgumentError(`"${value}" is not a node count from 1 to 100.`)
  return n
}

const READY_TIMEOUT_MS = 60_000

export function registerTestnet (program: Command): void {
  program.command('testnet')
    .description('run a local testnet: N nodes as separate processes on 127.0.0.1; Ctrl-C stops them')
    .option('--nodes <n>', 'how many nodes', parseNodes, 3)
    .option('--regions <list>', 'regions, assigned to the nodes in turn', 'de,us,jp')
    .option('--dir <dir>', 'where the nodes\' data directories go (default: a new temporary directory, removed on exit)')
    .option('--allow-private-targets', 'let the exits reach loopback and private addresses (for local tests)')
    .option('--exit-ports <list>', 'ports the exits allow, e.g. 80,443,8000-8100')
    .option('--json', 'print the nodes as JSON once all are up')
    .action(async (opts) => {
      const regions = String(opts.regions).split(',').map(r => normalizeRegion(r)).filter(r => r !== '')
      const bad = regions.find(r => !isValidRegion(r))
      if (bad != null || regions.length === 0) throw new UsageError(`--regions: "${bad ?? opts.regions}" is not a region (ISO 3166-1 alpha-2, optionally -subdivision, e.g. de,us-ca)`)
      const temporary = opts.dir == null
      const base = temporary ? await mkdtemp(join(tmpdir(), 'spareband-testnet-')) : resolve(opts.dir)
      await mkdir(base, { recursive: true })
      const extra: string[] = []
      if (opts.allowPrivateTargets === true) extra.push('--allow-private-targets')
      if (opts.exitPorts != null) extra.push('--exit-ports', opts.exitPorts)

      const children: ChildProcess[] = []
      let stopping = false
      const stopAll = async (code: number): Promise<never> => {
        stopping = true
        for (const c of children) if (c.exitCode == null) c.kill('SIGTERM')
        const deadline = Date.now() + 8000
        while (children.some(c => c.exitCode == null && c.signalCode == null) && Date.now() < deadline) await sleep(50)
        for (const c of children) if (c.exitCode == null && c.signalCode == null) c.kill('SIGKILL')
        if (temporary) await rm(base, { recursive: true, force: true })
        log('info', 'testnet stopped', { nodes: children.length })
        process.exit(code)
      }
      let signalled = false
      const onSignal = (): void => {
        if (signalled) process.exit(130)
        signalled = true
        void stopAll(0)
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
      process.on('SIGHUP', onSignal)

      const startNode = async (index: number, bootstrap: string[]): Promise<TestnetNode> => {
        const dataDir = join(base, `node-${index}`)
        const region = regions[index % regions.length]
        // a --dir used before keeps its nodes' identities: a new key would not start with the ledger.db there
        await loadOrCreateIdentity(dataDir)
        const logFile = await open(join(dataDir, 'node.log'), 'w')
        const args = [
          process.argv[1], 'start', '--data-dir', dataDir, '--network', 'local', '--region', region,
          '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--socks-port', '0', '--http-port', '0',
          ...bootstrap.flatMap(b => ['--bootstrap', b]), ...extra
        ]
        // the IPC channel ties each node's life to ours: if we are killed, they stop.
        // detached: a process group of its own, so Ctrl-C (SIGINT to the terminal's whole group) reaches only us, and
        // our SIGTERM is a node's first signal, which stops it cleanly, not a second one, which made it exit at once
        const child = spawn(process.execPath, [...NODE_RUNTIME_FLAGS, ...args], { stdio: ['ignore', logFile.fd, logFile.fd, 'ipc'], env: { ...process.env, SPAREBAND_DATA_DIR: dataDir }, detached: true })
        children.push(child)
        child.on('exit', (code, signal) => {
          void logFile.close()
          if (!stopping) {
            log('error', 'testnet node exited', { node: index, code, signal, log: join(dataDir, 'node.log') })
            void stopAll(1)
          }
        })
        const deadline = Date.now() + READY_TIMEOUT_MS
        while (Date.now() < deadline) {
          if (child.exitCode != null) break
          const info = await readApiInfo(dataDir)
          if (info?.pid === child.pid) {
            const status = await callApi(dataDir, '/v1/status')
            return {
              index,
              peerId: status.peerId,
              region,
              dataDir,
              api: status.api,
              socksPort: status.proxy?.socksPort,
              httpPort: status.proxy?.httpPort,
              addresses: status.addresses,
              pid: child.pid ?? 0
            }
          }
          await sleep(100)
        }
        const tail = (await readFile(join(dataDir, 'node.log'), 'utf8').catch(() => '')).split('\n').slice(-10).join('\n')
        throw new Error(`testnet node ${index} did not come up; its log ends with:\n${tail}`)
      }

      try {
        const first = await startNode(0, [])
        const bootstrap = first.addresses.filter(a => a.includes('/tcp/')).slice(0, 1)
        const rest = await Promise.all(Array.from({ length: opts.nodes - 1 }, async (_, i) => startNode(i + 1, bootstrap)))
        const nodes = [first, ...rest]
        if (opts.json === true) printJson({ dir: base, nodes })
        else {
          process.stdout.write(formatTable(['NODE', 'PEER ID', 'REGION', 'API', 'SOCKS5', 'HTTP', 'DATA DIR'],
            nodes.map(n => [n.index, n.peerId, n.region, n.api, n.socksPort, n.httpPort, n.dataDir])))
          process.stdout.write(`\ntestnet of ${nodes.length} node(s) is up. Ctrl-C stops it.\n` +
            `try:  npx spareband peers --data-dir ${first.dataDir}\n` +
            `      npx spareband providers --region ${regions[0]} --data-dir ${nodes[nodes.length - 1].dataDir}\n` +
            `      npx spareband probe --region ${regions[0]} https://example.org/ --data-dir ${nodes[nodes.length - 1].dataDir}\n` +
            `      curl --proxy socks5h://region-${regions[0]}:x@127.0.0.1:${nodes[nodes.length - 1].socksPort} https://example.org/\n` +
            `      npx spareband dashboard --data-dir ${first.dataDir}\n`)
        }
        log('info', 'testnet ready', { nodes: nodes.length, bootstrap: bootstrap[0] })
      } catch (err: any) {
        log('error', err.message)
        await stopAll(1)
      }
      await new Promise<never>(() => {})
    })
}
