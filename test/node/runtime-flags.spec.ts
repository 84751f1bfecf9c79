import { describe, it, expect } from 'vitest'
import { readFile } from 'node:fs/promises'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { resolve } from 'node:path'
import { NODE_RUNTIME_FLAGS } from '../../src/node/runtime-flags.ts'

const root = resolve(import.meta.dirname, '..', '..')
const exec = promisify(execFile)

describe('node runtime flags', () => {
  it('the spareband command and npm start run node with them', async () => {
    const cli = await readFile(resolve(root, 'src/cli/index.ts'), 'utf8')
    expect(cli.split('\n')[0]).toBe(`#!/usr/bin/env -S node ${NODE_RUNTIME_FLAGS.join(' ')}`)
    const pkg = JSON.parse(await readFile(resolve(root, 'package.json'), 'utf8'))
    expect(pkg.scripts.start).toBe(`node ${NODE_RUNTIME_FLAGS.join(' ')} dist/src/cli/index.js testnet`)
  })

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
})
