/**
 * CPU time of the processes a transfer runs through. On a 2-core box three
 * busy processes share two cores and MB/s swings from run to run; CPU
 * milliseconds per MiB moved is the steadier measure of what each path costs.
 */

import type { NodeHandle } from './node-handle.ts'

const MiB = 1024 * 1024

/** CPU time this process has used, user + system, in ms. */
export function cpuMs (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

/** A process whose CPU time can be asked for: this one, or a bench child (its 'cpu' command). */
export type CpuSource = Pick<NodeHandle, 'pid' | 'call'>

/** This process, as a CpuSource. */
export const thisProcess: CpuSource = { pid: process.pid, call: async () => cpuMs() as any }

async function cpuMsOf (procs: CpuSource[]): Promise<number[]> {
  return Promise.all(procs.map(async p => p.pid === process.pid ? cpuMs() : p.call<number>('cpu')))
}

/**
 * Runs a transfer and adds the CPU ms per MiB that each of `procs`
 * (distinct processes) spent on it, in their order, and their sum.
 */
export async function measured<T extends { bytes: number }> (procs: CpuSource[], transfer: () => Promise<T>): Promise<T & { cpuMsPerMiB: number, cpuByProcess: number[] }> {
  const before = await cpuMsOf(procs)
  const res = await transfer()
  const after = await cpuMsOf(procs)
  const cpuByProcess = after.map((a, i) => (a - before[i]) / (res.bytes / MiB))
  return { ...res, cpuByProcess, cpuMsPerMiB: cpuByProcess.reduce((a, b) => a + b, 0) }
}
