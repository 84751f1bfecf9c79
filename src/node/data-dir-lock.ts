/**
 * One node per data directory. Two nodes on one directory would be one
 * identity twice on the network, two writers of one ledger (each with its
 * own cached balances) and of its pending-receipt journal and quota file,
 * and each other's `api.json` (the one that stops first deletes it). So a
 * node holds `node.lock` (its pid) from createSparebandNode() to its stop().
 *
 * A lock whose process is gone (killed, crashed) is taken over: the pid is
 * checked with signal 0. Our own pid in a lock this process does not hold
 * is such a leftover too (a container restarts its process with the same
 * pid); a directory this process holds is known from `held`, whatever the file says.
 */

import { openSync, readFileSync, realpathSync, unlinkSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { DataDirInUseError } from '../errors.ts'

export const LOCK_FILE = 'node.lock'

/** Lock files this process holds. */
const held = new Set<string>()
let exitHook = false

/** A process that exits without stopping its nodes (process.exit() after a failed start) leaves no lock behind; one killed outright does, and the next node takes it over. */
function removeHeldOnExit (): void {
  if (exitHook) return
  exitHook = true
  process.once('exit', () => {
    for (const file of held) {
      if (lockHolder(file) === process.pid) {
        try { unlinkSync(file) } catch {}
      }
    }
  })
}

export interface DataDirLock {
  readonly file: string
  /** Deletes the lock file (if it is still ours). Idempotent. */
  release: () => void
}

/** Takes `dataDir` for this node, or throws DataDirInUseError naming who holds it. */
export function lockDataDir (dataDir: string): DataDirLock {
  const file = join(realpathSync(dataDir), LOCK_FILE)
  if (held.has(file)) throw new DataDirInUseError(`data directory ${dataDir} is in use by another node in this process: stop() it first, or give this node its own data directory`, { dataDir, pid: process.pid })
  for (let attempt = 0; ; attempt++) {
    let fd: number
    try {
      fd = openSync(file, 'wx', 0o600)
    } catch (err: any) {
      if (err.code !== 'EEXIST' || attempt > 0) throw err
      const pid = lockHolder(file)
      if (pid != null && pid !== process.pid && isAlive(pid)) {
        throw new DataDirInUseError(`data directory ${dataDir} is in use by process ${pid} (its ${LOCK_FILE}): stop that node first, or give this one its own data directory. If no spareband runs there, delete ${file}`, { dataDir, pid })
      }
      // left by a process that is gone: take it over
      try { unlinkSync(file) } catch {}
      continue
    }
    try {
      writeSync(fd, JSON.stringify({ pid: process.pid, since: new Date().toISOString() }) + '\n')
    } finally {
      closeSync(fd)
    }
    held.add(file)
    removeHeldOnExit()
    let released = false
    return {
      file,
      release: () => {
        if (released) return
        released = true
        held.delete(file)
        if (lockHolder(file) === process.pid) {
          try { unlinkSync(file) } catch {}
        }
      }
    }
  }
}

/** The pid in a lock file; undefined when it holds none (cut short, not ours). */
function lockHolder (file: string): number | undefined {
  try {
    const pid = JSON.parse(readFileSync(file, 'utf8')).pid
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    // EPERM: it exists, under another user
    return err.code === 'EPERM'
  }
}
