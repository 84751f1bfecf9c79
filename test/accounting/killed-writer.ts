import { spawn } from 'node:child_process'
import { join } from 'node:path'

/**
 * Runs a writer script (ledger-writer.ts: recordReceipt, by default) on
 * `file` in a child process and SIGKILLs it, without warning, once it has
 * acknowledged a receipt with seq `killAt`. Returns what it acknowledged
 * (receipt id -> seq) and how it ended.
 */
export async function writeUntilKilled (file: string, killAt: bigint, script = 'ledger-writer.ts'): Promise<{ acknowledged: Map<string, bigint>, signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, ['--experimental-transform-types', '--no-warnings', join(import.meta.dirname, script), file], { stdio: ['ignore', 'pipe', 'inherit'] })
  const acknowledged = new Map<string, bigint>()
  let buffered = ''
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', () => { resolve() })
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop()!
      for (const line of lines) {
        const [id, seq] = line.split(' ')
        acknowledged.set(id, BigInt(seq))
      }
      if ([...acknowledged.values()].some(seq => seq >= killAt)) child.kill('SIGKILL')
    })
  })
  return { acknowledged, signal: child.signalCode }
}
