/**
 * A ledger file's path in a temporary directory of its own for each test,
 * removed after it. Apart from test/accounting/fixtures.ts, which scripts
 * run in child processes import: this one adds vitest hooks.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach } from 'vitest'

/** Call at the top of a spec file (it adds the hooks); read `file` within a test. */
export function ledgerFilePerTest (prefix: string): { readonly file: string } {
  let dir: string
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), prefix)) })
  afterEach(() => { rmSync(dir, { recursive: true, force: true, maxRetries: 5 }) })
  return { get file () { return join(dir, 'ledger.db') } }
}
