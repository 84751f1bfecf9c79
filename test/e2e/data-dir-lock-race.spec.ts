/**
 * Nodes started at the same moment on a data directory whose lock is stale
 * (its process was killed): exactly one takes it over. Each round starts
 * six processes that spin until a "go" file appears, so their takeovers
 * overlap; one that takes the lock keeps its process alive, as a node
 * would, until every other has finished (a contender that judged the lock
 * after its taker had exited would rightly take it over). Runs on dist/ (the child processes import the built module).
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
  const [dir, go, done] = process.argv.slice(2)
  process.stdout.write('ready\\n')
  while (!existsSync(go)) {}
  let took = false
  try { lockDataDir(dir); took = true } catch (err) { process.stdout.write('refused ' + err.name + '\\n') }
  if (took) {
    process.stdout.write('took\\n')
    // alive (holding the lock) until every other contender has exited: one that judged the lock after we had gone would rightly take it over
    setInterval(() => { if (existsSync(done)) process.exit(0) }, 20)
  } else process.exit(0)
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
  const done = join(dataDir, 'done')
  const children = Array.from({ length: contenders }, () => spawn(process.execPath, ['--input-type=module', '-e', CHILD, LOCK_MODULE, dataDir, go, done], { stdio: ['ignore', 'pipe', 'inherit'] }))
  const outputs = children.map(c => {
    let text = ''
    const seen: Array<{ pattern: RegExp, resolve: () => void }> = []
    c.stdout!.on('data', (d: Buffer) => {
      text += d.toString()
      for (const s of seen) if (s.pattern.test(text)) s.resolve()
    })
    const when = async (pattern: RegExp): Promise<void> => new Promise(resolve => { seen.push({ pattern, resolve }); if (pattern.test(text)) resolve() })
    const exited = new Promise<void>(resolve => c.once('exit', () => resolve()))
    return {
      ready: when(/ready/),
      // a loser has exited; a winner has said so and waits for `done`
      settled: Promise.race([exited, when(/took/)]),
      exited,
      text: () => text.replace('ready\n', '').trim()
    }
  })
  await Promise.all(outputs.map(o => o.ready))
  writeFileSync(go, '')
  await Promise.all(outputs.map(o => o.settled))
  writeFileSync(done, '')
  await Promise.all(outputs.map(o => o.exited))
  return outputs.map(o => o.text())
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
