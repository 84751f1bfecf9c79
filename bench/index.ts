/**
 * `npm run bench`: runs every `*.bench.js` next to this file, one after the
 * other, each in a process of its own (so memory figures are per bench),
 * with its output streamed through. The tunnel bench goes first, the others
 * follow in alphabetical order. Exits non-zero when a bench fails.
 *
 * `node dist/bench/index.js tunnel selection` runs only the benches named.
 *
 * The benches run on this process's node (`process.execPath`). spareband
 * needs node >= 22 (node:sqlite, libp2p), and a bare `node` on the PATH may
 * be older than the node 24 the project pins in node_modules (`npm run`
 * puts that one first); under an older node the benches run on the pinned
 * one instead, and say so.
 */

import { spawn } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { NODE_RUNTIME_FLAGS } from '../src/node/runtime-flags.ts'

const SUFFIX = '.bench.js'
const FIRST = 'tunnel'
const MIN_NODE_MAJOR = 22

/** The node to run the benches on: this one, unless it is too old and the project's pinned node is there. */
export function benchNode (): string {
  if (Number(process.versions.node.split('.')[0]) >= MIN_NODE_MAJOR) return process.execPath
  const pinned = resolve(import.meta.dirname, '..', '..', 'node_modules', 'node', 'bin', 'node')
  if (!existsSync(pinned)) throw new Error(`node ${process.version} is too old for spareband (needs >= ${MIN_NODE_MAJOR}): use npm run bench`)
  console.log(`node ${process.version} is too old for spareband (needs >= ${MIN_NODE_MAJOR}): running the benches on ${pinned}`)
  return pinned
}

export function benchFiles (dir: string): string[] {
  const names = readdirSync(dir).filter(f => f.endsWith(SUFFIX)).map(f => f.slice(0, -SUFFIX.length))
  names.sort((a, b) => a === FIRST ? -1 : b === FIRST ? 1 : a.localeCompare(b))
  return names.map(n => join(dir, n + SUFFIX))
}

/**
 * Benches that run many nodes in one process, on node's own defaults: the
 * runtime flags are tuned for one node per process carrying bulk data, and
 * with 30 nodes' objects in one heap the small young generation promotes
 * too early (measured: the routing bench's first request p50 0.75 s with
 * node's defaults, 2.5 s with the flags).
 */
const MANY_NODES_PER_PROCESS = new Set(['routing'])

/** The node flags a bench runs with: a node's own, unless it hosts many nodes. */
export function benchFlags (name: string): readonly string[] {
  return MANY_NODES_PER_PROCESS.has(name) ? [] : NODE_RUNTIME_FLAGS
}

async function runOne (node: string, file: string, flags: readonly string[]): Promise<{ code: number | null, signal: NodeJS.Signals | null, ms: number }> {
  const started = performance.now()
  const child = spawn(node, [...flags, file], { stdio: 'inherit' })
  const forward = (sig: NodeJS.Signals): void => { child.kill(sig) }
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (c, s) => resolve([c, s]))
    })
    return { code, signal, ms: performance.now() - started }
  } finally {
    process.off('SIGINT', forward)
    process.off('SIGTERM', forward)
  }
}

export async function main (): Promise<void> {
  const only = process.argv.slice(2)
  let files = benchFiles(import.meta.dirname)
  if (only.length > 0) files = files.filter(f => only.some(n => f.endsWith(`/${n}${SUFFIX}`)))
  if (files.length === 0) {
    console.error(`no *${SUFFIX} files to run in ${import.meta.dirname}`)
    process.exitCode = 1
    return
  }
  const node = benchNode()
  const failed: string[] = []
  const summary: string[] = []
  const width = Math.max(...files.map(f => f.slice(f.lastIndexOf('/') + 1, -SUFFIX.length).length))
  for (const file of files) {
    const name = file.slice(file.lastIndexOf('/') + 1, -SUFFIX.length)
    const flags = benchFlags(name)
    console.log(`\n=== ${name} bench (${file}${flags.length > 0 ? `, node ${flags.join(' ')}` : ', node defaults'}) ===`)
    const { code, signal, ms } = await runOne(node, file, flags)
    const ok = code === 0
    if (!ok) failed.push(name)
    summary.push(`${name.padEnd(width)}  ${ok ? 'ok    ' : 'FAILED'} ${(ms / 1000).toFixed(1).padStart(6)} s${ok ? '' : ` (${signal ?? `exit code ${code}`})`}`)
  }
  console.log('\n=== benches ===')
  for (const s of summary) console.log(s)
  if (failed.length > 0) {
    console.error(`${failed.length} of ${files.length} benches failed: ${failed.join(', ')}`)
    process.exitCode = 1
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main()
