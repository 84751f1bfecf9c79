/**
 * The bench's handle on a node, in a child process (bench/exit-process.ts
 * over IPC) or in the bench's own process; both answer the same commands.
 */

import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { NodeHost } from '../exit-process.ts'
import { NODE_RUNTIME_FLAGS } from '../../src/node/runtime-flags.ts'
import type { ChildProcess } from 'node:child_process'
import type { MemoryFigures, StartedNode } from '../exit-process.ts'
import type { SparebandConfigInput } from '../../src/index.ts'

export const EXIT_PROCESS_SCRIPT = resolve(import.meta.dirname, '..', 'exit-process.js')

export interface NodeHandle {
  readonly where: 'child process' | 'in-process'
  readonly pid: number
  call<T = any> (cmd: string, args?: Record<string, unknown>): Promise<T>
  start (config: SparebandConfigInput): Promise<StartedNode>
  mem (gc?: boolean): Promise<MemoryFigures>
  /** Stops the node (and the process, for a child). */
  close (): Promise<void>
}

abstract class Base {
  abstract call<T = any> (cmd: string, args?: Record<string, unknown>): Promise<T>
  async start (config: SparebandConfigInput): Promise<StartedNode> { return this.call<StartedNode>('start', { config }) }
  async mem (gc = true): Promise<MemoryFigures> { return this.call<MemoryFigures>('mem', { gc }) }
}

export class InProcessNode extends Base implements NodeHandle {
  readonly where = 'in-process' as const
  readonly pid = process.pid
  readonly host = new NodeHost()
  async call<T = any> (cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    return this.host.command({ cmd, ...args }) as Promise<T>
  }

  async close (): Promise<void> { await this.host.stop() }
}

export class ChildNode extends Base implements NodeHandle {
  readonly where = 'child process' as const
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()
  private readonly exited: Promise<void>

  private constructor (readonly child: ChildProcess) {
    super()
    child.on('message', (msg: any) => {
      const p = this.pending.get(msg.id)
      if (p == null) return
      this.pending.delete(msg.id)
      if (msg.ok === true) p.resolve(msg.value)
      else p.reject(new Error(`node child ${child.pid}: ${String(msg.error)}`))
    })
    this.exited = new Promise(resolve => child.once('exit', (code, signal) => {
      for (const p of this.pending.values()) p.reject(new Error(`node child ${child.pid} exited (${code ?? signal})`))
      this.pending.clear()
      resolve()
    }))
  }

  get pid (): number { return this.child.pid ?? -1 }

  static async spawn (): Promise<ChildNode> {
    // SPAREBAND_BENCH_CHILD_ARGS: extra node flags for the children, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
    const extra = (process.env.SPAREBAND_BENCH_CHILD_ARGS ?? '').split(' ').filter(a => a !== '')
    const child = spawn(process.execPath, ['--expose-gc', ...NODE_RUNTIME_FLAGS, ...extra, EXIT_PROCESS_SCRIPT], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced'
    })
    const handle = new ChildNode(child)
    await new Promise<void>((resolve, reject) => {
      handle.pending.set(0, { resolve: () => resolve(), reject })
      child.once('error', reject)
    })
    return handle
  }

  async call<T = any> (cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.child.exitCode != null || this.child.signalCode != null || !this.child.connected) throw new Error(`node child ${this.pid} is gone`)
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.child.send({ id, cmd, ...args })
    })
  }

  async close (): Promise<void> {
    if (this.child.exitCode != null || this.child.signalCode != null) return
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 8000)
    try {
      if (this.child.connected) await this.call('stop').catch(() => {})
      if (this.child.connected) this.child.disconnect()
      await this.exited
    } finally {
      clearTimeout(timer)
    }
  }
}

export async function openNode (where: NodeHandle['where']): Promise<NodeHandle> {
  return where === 'child process' ? ChildNode.spawn() : new InProcessNode()
}
