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
import { decimalNumber } from '../../node/config.ts'
import { dataDirOwner } from '../../node/data-dir-lock.ts'
import { DataDirInUseError } from '../../errors.ts'
import { checkDataDir } from '../../node/data-dir.ts'
import { readApiInfo } from '../../node/control-api.ts'
import { isValidRegion, normalizeRegion } from '../../routing/regions.ts'
import { parsePortList } from '../../relay/ports.ts'
import { callApi } from '../api-client.ts'
import { flagArgs, resolveFlags } from '../config-from-flags.ts'
import { UsageError, describeFsError } from '../errors.ts'
import { formatTable, log, printJson, surviveClosedOutput } from '../output.ts'
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

/** The network definition every testnet node runs on. */
const NETWORK = 'local'

function parseNodes (value: string): number {
  const n = decimalNumber(value) ?? NaN
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new InvalidArgumentError(`"${value}" is not a node count from 1 to 100.`)
  return n
}

const READY_TIMEOUT_MS = 60_000
/** Lines of a failed node's log shown: its error, and what led to it. */
const LOG_TAIL_LINES = 20

/** The last lines of a node's log, each marked with the node, for the testnet's stderr. */
async function logTail (dataDir: string, index: number): Promise<string> {
  const lines = (await readFile(join(dataDir, 'node.log'), 'utf8').catch(() => '')).split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  return lines.slice(-LOG_TAIL_LINES).map(l => `node ${index} | ${l}\n`).join('')
}

export function registerTestnet (program: Command): void {
  program.command('testnet')
    .description('run a local testnet: N nodes as separate processes on 127.0.0.1; Ctrl-C stops them')
    .option('--nodes <n>', 'how many nodes', parseNodes, 3)
    .option('--regions <list>', 'regions, assigned to the nodes in turn', 'de,us,jp')
    .option('--dir <dir>', 'where the nodes\' data directories go, kept (default: a new temporary directory, removed on exit)')
    .option('--allow-private-targets', 'let the exits reach loopback and private addresses (for local tests)')
    .option('--exit-ports <list>', 'ports the exits allow, e.g. 80,443,8000-8100')
    .option('--keep-going', 'once all are up, a node that exits (killed, say, to try failover) is reported and the others go on; by default the testnet stops with it')
    .option('--json', 'print the nodes as JSON once all are up')
    .action(async (opts, cmd: Command) => {
      // the program's --data-dir names one node's directory: taken here it was ignored, and the nodes went to a temporary one
      if (cmd.parent?.opts().dataDir != null) throw new UsageError('testnet puts its nodes\' data directories under --dir DIR; --data-dir names one node\'s (for start, status, ...)')
      // it runs until Ctrl-C: a reader of its output going away must not skip stopping its nodes
      surviveClosedOutput()
      const regions = String(opts.regions).split(',').map(r => normalizeRegion(r)).filter(r => r !== '')
      const bad = regions.find(r => !isValidRegion(r))
      if (bad != null || regions.length === 0) throw new UsageError(`--regions: "${bad ?? opts.regions}" is not a region (ISO 3166-1 alpha-2, optionally -subdivision, e.g. de,us-ca)`)
      // what every node is started with, besides its region and bootstrap peer, checked as its `start` would check it
      // (with the environment the nodes inherit): a bad value is the flag's own error here, before any node starts
      const nodeFlags: Record<string, unknown> = { listen: ['/ip4/127.0.0.1/tcp/0'], apiPort: 0, socksPort: 0, httpPort: 0 }
      if (opts.allowPrivateTargets === true) nodeFlags.allowPrivateTargets = true
      if (opts.exitPorts != null) nodeFlags.exitPorts = opts.exitPorts
      const nodeConfig = resolveFlags({ ...nodeFlags, region: regions[0] }, NETWORK)
      const temporary = opts.dir == null
      // resolve('') is the working directory: the nodes' directories would land wherever the command ran
      if (opts.dir === '') throw new UsageError('--dir is empty: name a directory, or leave the flag out for a temporary one')
      // a file there (or above it) is the operator's to fix, not an EEXIST or ENOTDIR from mkdir
      if (!temporary) checkDataDir(opts.dir, '--dir')
      const base = temporary ? await mkdtemp(join(tmpdir(), 'spareband-testnet-')) : resolve(opts.dir)
      try {
        await mkdir(base, { recursive: true })
      } catch (err: any) {
        throw new UsageError(`--dir: cannot create ${base}: ${describeFsError(err)}`)
      }

      const children: ChildProcess[] = []
      const running = (): ChildProcess[] => children.filter(c => c.exitCode == null && c.signalCode == null)
      let stopping = false
      /** All nodes came up: with --keep-going, one that exits after this leaves the others running. */
      let up = false
      const stopAll = async (code: number): Promise<never> => {
        stopping = true
        for (const c of children) if (c.exitCode == null) c.kill('SIGTERM')
        const deadline = Date.now() + 8000
        while (running().length > 0 && Date.now() < deadline) await sleep(50)
        for (const c of running()) c.kill('SIGKILL')
        if (temporary) await rm(base, { recursive: true, force: true })
        log('info', 'testnet stopped', { nodes: children.length })
        process.exit(code)
      }
      /**
       * A node exited, or never came up: the end of its log (its error) goes
       * to our stderr before the testnet stops, since a temporary directory
       * goes with it; the log file is named only when it stays (--dir).
       */
      const nodeFailed = async (index: number, dataDir: string, what: string, fields: Record<string, unknown> = {}): Promise<never> => {
        // the first failure is reported; the testnet is stopping already for it (or for a signal)
        if (stopping) return new Promise<never>(() => {})
        const goOn = opts.keepGoing === true && up && running().length > 0
        if (!goOn) stopping = true
        log('error', `testnet node ${index} ${what}`, { ...fields, log: temporary ? undefined : join(dataDir, 'node.log') })
        const tail = await logTail(dataDir, index)
        process.stderr.write(tail === '' ? `node ${index} | (its log is empty)\n` : tail)
        if (goOn) {
          log('info', 'the other nodes go on (--keep-going)', { running: running().length })
          return new Promise<never>(() => {})
        }
        if (temporary) log('info', 'the nodes\' logs go with the temporary directory; testnet --dir DIR keeps them')
        return stopAll(1)
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
        // a node already runs there (another testnet on this --dir): its log is left alone, not emptied for a node that
        // would only be refused the directory's lock
        const owner = dataDirOwner(dataDir)
        if (owner != null) throw new DataDirInUseError(`${dataDir} is in use by the node with pid ${owner} (another testnet on this --dir?): stop it, or give this testnet another --dir`, { dataDir, pid: owner })
        const logFile = await open(join(dataDir, 'node.log'), 'w')
        const args = [process.argv[1], 'start', '--data-dir', dataDir, '--network', NETWORK, ...flagArgs({ ...nodeFlags, region, bootstrap })]
        // the IPC channel ties each node's life to ours: if we are killed, they stop.
        // detached: a process group of its own, so Ctrl-C (SIGINT to the terminal's whole group) reaches only us, and
        // our SIGTERM is a node's first signal, which stops it cleanly, not a second one, which made it exit at once
        const child = spawn(process.execPath, [...NODE_RUNTIME_FLAGS, ...args], { stdio: ['ignore', logFile.fd, logFile.fd, 'ipc'], env: { ...process.env, SPAREBAND_DATA_DIR: dataDir }, detached: true })
        children.push(child)
        child.on('exit', (code, signal) => {
          void logFile.close()
          void nodeFailed(index, dataDir, 'exited', { code: code ?? undefined, signal: signal ?? undefined })
        })
        const deadline = Date.now() + READY_TIMEOUT_MS
        while (Date.now() < deadline) {
          // its 'exit' handler reports it and stops the testnet
          if (child.exitCode != null || child.signalCode != null) return new Promise<never>(() => {})
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
        return nodeFailed(index, dataDir, `did not come up within ${READY_TIMEOUT_MS / 1000} s`)
      }

      try {
        const first = await startNode(0, [])
        const bootstrap = first.addresses.filter(a => a.includes('/tcp/')).slice(0, 1)
        const rest = await Promise.all(Array.from({ length: opts.nodes - 1 }, async (_, i) => startNode(i + 1, bootstrap)))
        const nodes = [first, ...rest]
        // a URL the exits allow, as they resolved their flags: https://example.org/ is on none of them when their ports leave out 443
        const ports = parsePortList(nodeConfig.exit.allowed_ports)
        const tryUrl = ports.some(([lo, hi]) => lo <= 443 && 443 <= hi)
          ? 'https://example.org/'
          : `http://${nodeConfig.exit.allow_private_targets ? '127.0.0.1' : 'example.org'}:${ports[0][0]}/`
        if (opts.json === true) printJson({ dir: base, nodes })
        else {
          process.stdout.write(formatTable(['NODE', 'PEER ID', 'REGION', 'API', 'SOCKS5', 'HTTP', 'DATA DIR'],
            nodes.map(n => [n.index, n.peerId, n.region, n.api, n.socksPort, n.httpPort, n.dataDir])))
          // the last node tunnels through the first (in regions[0]); a lone node has no exit but its own, which it never uses
          const consumer = nodes[nodes.length - 1]
          const tunnelHints = nodes.length > 1
            ? `      npx spareband providers --region ${regions[0]} --data-dir ${consumer.dataDir}\n` +
              `      npx spareband probe --region ${regions[0]} ${tryUrl} --data-dir ${consumer.dataDir}\n` +
              `      curl --proxy socks5h://region-${regions[0]}:x@127.0.0.1:${consumer.socksPort} ${tryUrl}\n`
            : ''
          process.stdout.write(`\ntestnet of ${nodes.length} node(s) is up. Ctrl-C stops it.\n` +
            `try:  npx spareband peers --data-dir ${first.dataDir}\n` +
            tunnelHints +
            `      npx spareband dashboard --data-dir ${first.dataDir}\n` +
            `each node logs to node.log in its data directory${temporary ? ' (removed with it when the testnet stops: --dir DIR keeps them)' : ''}\n` +
            (nodes.length > 1 ? '' : 'one node tunnels through no exit (it never uses its own): run --nodes 2 or more to try the proxies\n'))
        }
        up = true
        log('info', 'testnet ready', { nodes: nodes.length, bootstrap: bootstrap[0] })
      } catch (err: any) {
        log('error', err.message)
        await stopAll(1)
      }
      await new Promise<never>(() => {})
    })
}
