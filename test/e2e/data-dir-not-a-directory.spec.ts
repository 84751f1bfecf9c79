import { describe, it, expect } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli, tempDir } from '../utils/cli.ts'
import { createSparebandNode } from '../../src/index.ts'

const LOCAL = ['--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--socks-port', '0', '--http-port', '0']

/**
 * A data directory path that is a file, or lies under one: the CLI says
 * so in one line and exits 2 (a usage/config error), as it does for a bad
 * flag, instead of a bare EEXIST or ENOTDIR (exit 1) from mkdir or the
 * config reader; the library rejects with ConfigError. The real CLI, built.
 */
describe('a data directory that is not a directory', () => {
  it('init and start with --data-dir naming a file, or a path under a file, exit 2 with what is in the way', async () => {
    const d = await tempDir('sb-datadir-file-')
    const file = join(d, 'not-a-dir')
    await writeFile(file, 'x')
    for (const command of [['init', '--region', 'de'], ['start', ...LOCAL]]) {
      const r = await runCli([...command, '--data-dir', file], { timeoutMs: 20_000 })
      expect(r.code, command[0]).toBe(2)
      expect(r.stderr).toBe(`spareband: --data-dir: ${file} exists and is not a directory; name a directory for the node's data (a missing one is created)\n`)
      const under = await runCli([...command, '--data-dir', join(file, 'node')], { timeoutMs: 20_000 })
      expect(under.code, command[0]).toBe(2)
      expect(under.stderr).toBe(`spareband: --data-dir: ${join(file, 'node')} is under ${file}, which exists and is not a directory; name a directory for the node's data (a missing one is created)\n`)
    }
  })

  it('names SPAREBAND_DATA_DIR when the path came from there', async () => {
    const d = await tempDir('sb-datadir-file-env-')
    const file = join(d, 'not-a-dir')
    await writeFile(file, 'x')
    const r = await runCli(['init'], { env: { SPAREBAND_DATA_DIR: file } })
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`spareband: SPAREBAND_DATA_DIR: ${file} exists and is not a directory; name a directory for the node's data (a missing one is created)\n`)
  })

  it('createSparebandNode() with such a dataDir rejects with ConfigError', async () => {
    const d = await tempDir('sb-datadir-file-lib-')
    const file = join(d, 'not-a-dir')
    await writeFile(file, 'x')
    const err = await createSparebandNode({ dataDir: file }).then(() => undefined, e => e)
    expect(err).toHaveProperty('name', 'ConfigError')
    expect(err.message).toBe(`data directory: ${file} exists and is not a directory; name a directory for the node's data (a missing one is created)`)
  })
})
