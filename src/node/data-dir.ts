/**
 * Making and checking the data directory. A data directory path that names
 * a file (a typo, a key file given by mistake) or lies under one otherwise
 * fails deep in mkdir or the config reader with a bare EEXIST or ENOTDIR.
 */

import { statSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { ConfigError } from '../errors.ts'

/** The node's accounts (node:sqlite), bound to its identity; beside it ledger.db-wal, -shm and .pending. */
export const LEDGER_FILE = 'ledger.db'

/**
 * `dataDir`, or the nearest of its parents, when it exists and is not a
 * directory: nothing can be made there. Undefined when the path is, or can
 * become, a directory, or when it cannot be told (no permission to look:
 * then the operation itself says why).
 */
export function notADirectory (dataDir: string): string | undefined {
  let path = resolve(dataDir)
  for (;;) {
    try {
      return statSync(path).isDirectory() ? undefined : path
    } catch (err: any) {
      // ENOENT: not there yet, ENOTDIR: something above it is a file; look further up
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') return undefined
      const parent = dirname(path)
      if (parent === path) return undefined
      path = parent
    }
  }
}

/**
 * Throws ConfigError when the data directory cannot be one (see
 * notADirectory). `source`: where the path came from, as the operator set
 * it ('--data-dir', 'SPAREBAND_DATA_DIR').
 */
export function checkDataDir (dataDir: string, source = 'data directory'): void {
  const file = notADirectory(dataDir)
  if (file == null) return
  const where = file === resolve(dataDir) ? `${dataDir} exists and is not a directory` : `${dataDir} is under ${file}, which exists and is not a directory`
  throw new ConfigError(`${source}: ${where}; name a directory for the node's data (a missing one is created)`, { source, key: 'data_dir' })
}

/** Creates the data directory (mode 0700) and its parents, with checkDataDir's error when a file is in the way. */
export async function makeDataDir (dataDir: string, source?: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
  } catch (err: any) {
    if (err.code === 'EEXIST' || err.code === 'ENOTDIR') checkDataDir(dataDir, source)
    throw err
  }
}
