import { describe, it, expect } from 'vitest'
import { readFile } from 'node:fs/promises'
import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { NODE_RUNTIME_FLAGS, NO_RELAUNCH_ENV, missingRuntimeFlags } from '../../src/node/runtime-flags.ts'
import { CLI, tempDir } from '../utils/cli.ts'

const root = resolve(import.meta.dirname, '..', '..')
const exec = promisify(execFile)

/** The command line of a running process, from /proc. */
async function cmdline (pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(x => x !== '')
}

describe('node runtime flags', () => {
  it('are flags this node accepts, and they cap the young generation', async () => {
    // the young generation grows with allocation: after 300,000 live objects
    // it is 16 MiB with node's defaults; a flag node does not know would make
    // it exit before running anything
    const probe = "const a = []; for (let i = 0; i < 3e5; i++) a.push({ i }); console.log(require('node:v8').getHeapSpaceStatistics().find(s => s.space_name === 'new_space').space_size)"
    const young = async (flags: readonly string[]): Promise<number> => Number((await exec(process.execPath, [...flags, '-e', probe])).stdout)
    const [withFlags, plain] = await Promise.all([young(NODE_RUNTIME_FLAGS), young([])])
    expect(withFlags).toBeGreaterThan(0)
    expect(withFlags).toBeLessThanOrEqual(2 * 1024 * 1024)
    expect(plain).toBeGreaterThan(withFlags)
  })

  it('counts a flag as given on the command line or in NODE_OPTIONS', () => {
    expect(missingRuntimeFlags([], '')).toEqual([...NODE_RUNTIME_FLAGS])
    expect(missingRuntimeFlags([...NODE_RUNTIME_FLAGS], '')).toEqual([])
    // node takes the young generation's flag in NODE_OPTIONS, and the old generation's only on its command line
    expect(missingRuntimeFlags(['--initial-old-space-size=128'], '--inspect --max-semi-space-size=1')).toEqual([])
    expect(missingRuntimeFlags([], '--max-semi-space-size=1')).toEqual(['--initial-old-space-size=128'])
    // another value is the operator's choice; underscores spell the same V8 flag
    expect(missingRuntimeFlags(['--max-semi-space-size=16', '--initial_old_space_size=512'], '')).toEqual([])
    expect(missingRuntimeFlags([], '--max-semi-space-size=16')).toEqual(['--initial-old-space-size=128'])
  })

  it('npm start passes them, and the spareband command started without them relaunches itself with them in the same process', async () => {
    const pkg = JSON.parse(await readFile(resolve(root, 'package.json'), 'utf8'))
    expect(pkg.scripts.start).toBe(`node ${NODE_RUNTIME_FLAGS.join(' ')} dist/src/cli/index.js testnet`)
    const dataDir = await tempDir('sb-flags-')
    const started = async (env: NodeJS.ProcessEnv): Promise<string[]> => {
      // plain node, no flags, no IPC channel: as a shell or a service manager starts it
      const child = spawn(process.execPath, [CLI, 'init', '--data-dir', dataDir, '--force'], { env: { ...process.env, ...env }, stdio: 'ignore' })
      try {
        let seen: string[] = []
        for (let i = 0; i < 200 && child.exitCode == null; i++) {
          // empty before exec and once it has exited: keep the last real one
          const now = await cmdline(child.pid!).catch(() => [])
          if (now.length > 0) seen = now
          if (seen.some(a => NODE_RUNTIME_FLAGS.includes(a))) break
          await sleep(10)
        }
        return seen
      } finally {
        await new Promise(resolve => { if (child.exitCode != null) resolve(undefined); else child.once('exit', resolve) })
        expect(child.exitCode).toBe(0)
      }
    }
    // the same pid now runs node with the flags, and the same arguments
    const relaunched = await started({})
    expect(relaunched.slice(1, 1 + NODE_RUNTIME_FLAGS.length)).toEqual([...NODE_RUNTIME_FLAGS])
    expect(relaunched.slice(-4)).toEqual(['init', '--data-dir', dataDir, '--force'])
    // and it can be told not to
    const asStarted = await started({ [NO_RELAUNCH_ENV]: '1' })
    expect(asStarted).toContain('init')
    expect(asStarted.some(a => NODE_RUNTIME_FLAGS.includes(a))).toBe(false)
  })
})
