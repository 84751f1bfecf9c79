/**
 * Nodes started at the same moment on a data directory whose lock is stale
 * (its process was killed): exactly one takes it over. Each round starts
 * six processes that spin until a "go" file appears, so their takeovers
 * overlap; each that takes the lock keeps its process alive a while, as a
 * node would. Runs on dist/ (the child processes import the built module).
 */

import { describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { tempDir } from '../utils/cli.ts'

const LOCK_MODULE = resolve(import.meta.dirname, '../../dist/src/node/data-dir-lock.js')
const CHILD = `
  import { existsSync } from 'node:fs'
  const { lockDataDir } = await import(process.argv[1])
  const [dir, go] = process.argv.slice(2)
  process.stdout.write('ready\\n')
  while (!existsSync(go)) {}
  let took = false
  try { lockDataDir(dir); took = true } catch (err) { process.stdout.write('refused ' + err.name + '\\n') }
  if (took) process.stdout.write('took\\n')
  setTimeout(() => process.exit(0), 700)
`

async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''])
  await new Promise(resolve => child.once('exit', resolve))
  return child.pid!
}

async function round (contenders: number): Promise<string[]> {
  const dataDir = await tempDir('sb-lock-race-')
  writeFileSync(join(dataDir, 'node.lock'), JSON.stringify({ pid: await deadPid() }) + '\n')
  const go = join(dataDir, 'go')
  const children = Array.from({ length: contenders }, () => spawn(process.execPath, ['--input-type=module', '-e', CHILD, LOCK_MODULE, dataDir, go], { stdio: ['ignore', 'pipe', 'inherit'] }))
  const outputs = children.map(c => {
    let text = ''
    c.stdout!.on('data', (d: Buffer) => { text += d.toString() })
    return {
      ready: new Promise<void>(resolve => { const check = (): void => { if (text.includes('ready')) resolve(); else c.stdout!.once('data', check) }; check() }),
      done: new Promise<string>(resolve => c.once('exit', () => resolve(text.replace('ready\n', '').trim())))
    }
  })
  await Promise.all(outputs.map(o => o.ready))
  writeFileSync(go, '')
  return Promise.all(outputs.map(o => o.done))
}

describe('a stale data directory lock taken over by processes at once', () => {
  it('goes to exactly one of them, round after round', async () => {
    for (let r = 0; r < 6; r++) {
      const results = await round(6)
      expect(results.filter(x => x === 'took'), `round ${r}: ${results.join(' | ')}`).toHaveLength(1)
      expect(results.filter(x => x !== 'took').every(x => x === 'refused DataDirInUseError'), results.join(' | ')).toBe(true)
    }
  }, 120_000)
})
