/**
 * An app's top-level `await ledger.close()` (and so `await node.stop()`)
 * in a process with nothing else to do: the checkpointer's worker thread is
 * unref'd, and close() waits for its exit, so the worker must hold the
 * event loop while it winds down, or Node exits with an unsettled await
 * (code 13). Runs on dist/, like the other e2e files.
 */

import { describe, it, expect } from 'vitest'
import { spawnSync } from 'node:child_process'
import { join, resolve } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { tempDir } from '../utils/cli.ts'

const LEDGER = resolve(import.meta.dirname, '../../dist/src/accounting/ledger.js')

describe('Ledger.close() at the top level of a script', () => {
  it('settles, and the script goes on to its end (exit 0)', async () => {
    const dir = await tempDir('sb-ledger-close-')
    const script = join(dir, 'close.mjs')
    await writeFile(script, `import { Ledger } from ${JSON.stringify(LEDGER)}
const ledger = Ledger.open(${JSON.stringify(join(dir, 'ledger.db'))})
await ledger.close()
console.log('closed')
`)
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 })
    expect(r.stderr).not.toContain('unsettled top-level await')
    expect(r.status).toBe(0)
    expect(r.stdout).toBe('closed\n')
  })
})
