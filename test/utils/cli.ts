/**
 * Runs the built CLI (`dist/src/cli/index.js`, built by `npm test` before
 * vitest starts) as real processes.
 */

import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { callApi } from '../../src/cli/api-client.ts'
import { NODE_RUNTIME_FLAGS } from '../../src/node/runtime-flags.ts'
import type { ChildProcess } from 'node:child_process'
import type { AddressInfo } from 'node:net'

export const CLI = resolve(import.meta.dirname, '../../dist/src/cli/index.js')

export interface CliResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

export async function tempDir (prefix = 'sb-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

/** A TCP port on 127.0.0.1 that was free a moment ago, for a node that must come back on the same one. */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

/**
 * `prefix` runs the command under another one, e.g. `['ip', 'netns', 'exec',
 * 'ns1']` (which execs node in place, so the pid stays node's).
 */
function spawnArgs (prefix: string[] | undefined, args: string[]): [string, string[]] {
  if (prefix == null || prefix.length === 0) return [process.execPath, args]
  return [prefix[0], [...prefix.slice(1), process.execPath, ...args]]
}

export async function runCli (args: string[], options: { env?: NodeJS.ProcessEnv, timeoutMs?: number, cwd?: string, prefix?: string[] } = {}): Promise<CliResult> {
  const child = spawn(...spawnArgs(options.prefix, [CLI, ...args]), { env: { ...process.env, ...options.env }, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', d => { stdout += d })
  child.stderr.on('data', d => { stderr += d })
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(res => child.on('exit', (c, s) => res([c, s])))
  clearTimeout(timer)
  return { code, signal, stdout, stderr }
}

export async function runCliJson<T = any> (args: string[]): Promise<T> {
  const r = await runCli(args)
  if (r.code !== 0) throw new Error(`spareband ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return JSON.parse(r.stdout) as T
}

/** A `spareband start` process, with its output collected. */
export class NodeProcess {
  readonly child: ChildProcess
  output = ''
  private exited: Promise<[number | null, NodeJS.Signals | null]>

  constructor (readonly dataDir: string, args: string[], env: NodeJS.ProcessEnv = {}, options: { prefix?: string[] } = {}) {
    // a light proof of work keeps test start-up fast; accounting tests set their own
    this.child = spawn(...spawnArgs(options.prefix, [...NODE_RUNTIME_FLAGS, CLI, 'start', '--data-dir', dataDir, ...args]), { env: { SPAREBAND_POW_DIFFICULTY: '8', ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
    this.child.stdout!.on('data', d => { this.output += d })
    this.child.stderr!.on('data', d => { this.output += d })
    this.exited = new Promise(res => this.child.on('exit', (c, s) => res([c, s])))
  }

  /** Waits until the node has written api.json with its own pid. */
  async ready (timeoutMs = 30_000): Promise<{ url: string, port: number }> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (this.child.exitCode != null) throw new Error(`node exited ${this.child.exitCode} before it was ready:\n${this.output}`)
      try {
        const info = JSON.parse(await readFile(join(this.dataDir, 'api.json'), 'utf8'))
        if (info.pid === this.child.pid) return info
      } catch {}
      await sleep(50)
    }
    throw new Error(`node not ready after ${timeoutMs} ms:\n${this.output}`)
  }

  /** Straight from the control API (the CLI's own output is tested in cli.spec.ts); a node in a network namespace is asked through NetnsNode (netns.ts). */
  async status (): Promise<any> {
    return callApi(this.dataDir, '/v1/status')
  }

  async peers (): Promise<any[]> {
    return callApi(this.dataDir, '/v1/peers')
  }

  /** Sends a signal and waits for the exit; returns the code and how long it took. */
  async stop (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<{ code: number | null, ms: number }> {
    const t = Date.now()
    if (this.child.exitCode != null || this.child.signalCode != null) return { code: this.child.exitCode, ms: 0 }
    this.child.kill(signal)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs)
    const [code] = await this.exited
    clearTimeout(timer)
    return { code, ms: Date.now() - t }
  }

  async kill (): Promise<void> {
    if (this.child.exitCode == null && this.child.signalCode == null) {
      this.child.kill('SIGKILL')
      await this.exited
    }
  }
}

/** Polls `fn` until it returns a truthy value. */
export async function waitFor<T> (fn: () => Promise<T> | T, { timeoutMs = 30_000, intervalMs = 200, what = 'condition' } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out waiting for ${what}${last != null ? `: ${String(last)}` : ''}`)
}
