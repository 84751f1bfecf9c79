/**
 * Every temporary file of a test run goes under one directory, removed when
 * the run ends: the tests' data dirs (mkdtemp in os.tmpdir()), the node
 * processes they spawn and the testnets those start inherit TMPDIR. Without
 * it each run left some 2,500 directories in /tmp.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'

let root: string | undefined

export function setup (): void {
  // each vitest project runs this: the first makes the directory, the others use it
  if (process.env.SPAREBAND_TESTS_TMPDIR != null) return
  root = mkdtempSync(join(tmpdir(), 'spareband-tests-'))
  process.env.SPAREBAND_TESTS_TMPDIR = root
  process.env.TMPDIR = root
}

export function teardown (): void {
  if (root != null) rmSync(root, { recursive: true, force: true, maxRetries: 5 })
}
