/**
 * One node per data directory. Two nodes on one directory share an
 * identity (the same peer id twice on the network), write the same
 * `ledger.db`, `ledger.db.pending` and quota counters, and the one that
 * stops first deletes `api.json` under the other, so `status` says no node
 * runs while one does. A node therefore holds `node.lock` in its data
 * directory from SparebandNode.create() to stop(): the pid of its process
 * and, where /proc has it, that process's start time.
 *
 * A lock whose process is gone (SIGKILL, a power cut) is stale and taken
 * over. So is one whose pid now belongs to another process (after a reboot,
 * or this container's pid 1 of a previous run): its start time differs, or
 * it names this very process, which holds no such lock. Of processes that
 * find a lock stale at the same moment, one takes it over (takeOver).
 */

import { existsSync, linkSync, mkdirSync, readFileSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DataDirInUseError, fsErrorWords } from '../errors.ts'

export const LOCK_FILE = 'node.lock'

interface LockOwner {
  pid: number
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot), when there is a /proc. */
  startTime?: string
}

/** Lock files this process holds. */
const held = new Set<string>()

export interface DataDirLock {
  readonly file: string
  /** Removes the lock file if it is still ours; idempotent. */
  release: () => void
}

/**
 * Takes the data directory's lock, or throws DataDirInUseError naming the
 * process that holds it. The directory must exist.
 */
function unwritableReason (err: any): string {
  const words = fsErrorWords(err)
  return words != null ? `${words}, ${String(err.code)}` : err?.message ?? String(err)
}

export function lockDataDir (dataDir: string): DataDirLock {
  const file = join(dataDir, LOCK_FILE)
  const me: LockOwner = { pid: process.pid, startTime: processStartTime(process.pid) }
  // written whole under another name, then linked: the lock file never exists half-written
  const tmp = `${file}.${process.pid}.tmp`
  try {
    writeFileSync(tmp, JSON.stringify(me) + '\n', { mode: 0o644 })
  } catch (err: any) {
    // a full disk leaves the file made and empty
    try { unlinkSync(tmp) } catch {}
    // the first write in the directory: say that it must be writable, not only an errno
    throw new Error(`cannot write in the data directory ${dataDir} (${unwritableReason(err)}): a node keeps its lock, identity and ledger there, so it needs a writable one (--data-dir, SPAREBAND_DATA_DIR)`, { cause: err })
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, file)
        held.add(file)
        break
      } catch (err: any) {
        if (err.code !== 'EEXIST') throw err
      }
      const owner = liveOwner(file)
      if (owner != null) {
        throw new DataDirInUseError(`${dataDir} is in use by another spareband node (pid ${owner.pid}): stop that one first, or give this one another data directory (--data-dir, SPAREBAND_DATA_DIR, or dataDir in createSparebandNode())`, { dataDir, pid: owner.pid })
      }
      // stale: its process is gone
      if (takeOver(file, tmp)) {
        held.add(file)
        break
      }
      if (attempt >= TAKEOVER_ATTEMPTS) {
        const why = existsSync(takeoverMutex(file))
          ? `another process is taking over its stale lock, or was cut short doing it (${takeoverMutex(file)}, removed once ${STALE_MUTEX_MS / 1000} s old): try again in a few seconds`
          : 'another process keeps replacing it'
        throw new DataDirInUseError(`${dataDir}: cannot take ${file}: ${why}`, { dataDir })
      }
      sleepSync(TAKEOVER_RETRY_MS)
    }
  } finally {
    try {
      unlinkSync(tmp)
    } catch {}
  }
  return {
    file,
    release: () => {
      if (!held.delete(file)) return
      if (readOwner(file)?.pid !== process.pid) return
      try {
        unlinkSync(file)
      } catch {}
    }
  }
}

/** Tries of a takeover another process holds, TAKEOVER_RETRY_MS apart: a second in all. */
const TAKEOVER_ATTEMPTS = 100
const TAKEOVER_RETRY_MS = 10
/**
 * A takeover takes a few system calls: a mutex older than this was left by
 * a process that died during one. Removing it is check-then-act: two
 * starters that both find it old can have the second remove a fresh mutex
 * the first let a third make, so a crash inside a takeover followed by
 * several simultaneous starts can still let two nodes in (a known limit).
 */
const STALE_MUTEX_MS = 10_000

/**
 * Replaces a stale lock with ours (`tmp` linked as `file`); false when it
 * is not ours to replace now (another process is taking it over, or has).
 *
 * Processes that find the lock stale at the same moment must not each
 * delete it and link their own: the second would delete the first's fresh
 * lock, and both would run. So the takeover runs under a mutex (a directory,
 * made atomically) and judges the lock again there: stale, it is deleted and
 * ours linked; alive (someone took it just before), it is left. A lock that
 * is absent by then is not deleted (a process starting just now may link its
 * own at any moment); our link then fails if it did.
 */
function takeOver (file: string, tmp: string): boolean {
  const mutex = takeoverMutex(file)
  try {
    mkdirSync(mutex)
  } catch (err: any) {
    if (err.code !== 'EEXIST') throw err
    try {
      if (Date.now() - statSync(mutex).mtimeMs > STALE_MUTEX_MS) rmdirSync(mutex)
    } catch {}
    return false
  }
  try {
    const state = lockState(file)
    if (state === 'alive') return false
    if (state === 'stale') unlinkSync(file)
    linkSync(tmp, file)
    return true
  } catch (err: any) {
    if (err.code === 'EEXIST' || err.code === 'ENOENT') return false
    throw err
  } finally {
    try {
      rmdirSync(mutex)
    } catch {}
  }
}

function lockState (file: string): 'absent' | 'stale' | 'alive' {
  if (!existsSync(file)) return 'absent'
  return liveOwner(file) != null ? 'alive' : 'stale'
}

/** The owner recorded in the lock `file`, if its process runs. */
function liveOwner (file: string): LockOwner | undefined {
  const owner = readOwner(file)
  return owner != null && isAlive(owner, file) ? owner : undefined
}

/** The directory a takeover of the lock `file` runs under (see takeOver). */
function takeoverMutex (file: string): string {
  return `${file}.takeover`
}

/** Blocks this thread for `ms` (lockDataDir is synchronous, and a takeover takes microseconds). */
function sleepSync (ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** The process holding the data directory's lock, if it is running; for commands that must not run beside a node. */
export function dataDirOwner (dataDir: string): number | undefined {
  return liveOwner(join(dataDir, LOCK_FILE))?.pid
}

function readOwner (file: string): LockOwner | undefined {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
  try {
    const v = JSON.parse(text)
    if (Number.isInteger(v?.pid) && v.pid > 0) return { pid: v.pid, startTime: typeof v.startTime === 'string' ? v.startTime : undefined }
  } catch {}
  // not ours to read: taken as stale, like a lock of a dead process
  return undefined
}

/**
 * Whether a process with this pid runs, as any user (EPERM: it runs as
 * another); a pid that is no pid counts as running, for the caller to find
 * out otherwise. A zombie (exited, not yet reaped by its parent) does not
 * run: a node SIGKILLed and restarted at once was refused for it, and one
 * whose parent never reaps it would hold its directory for good.
 */
export function processRuns (pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return true
  try {
    process.kill(pid, 0)
  } catch (err: any) {
    return err.code !== 'ESRCH'
  }
  const state = procStat(pid)?.[0]
  return state !== 'Z' && state !== 'X'
}

function isAlive (owner: LockOwner, file: string): boolean {
  if (owner.pid === process.pid) return held.has(file)
  if (!processRuns(owner.pid)) return false
  const now = processStartTime(owner.pid)
  // the pid was given to another process since
  if (owner.startTime != null && now != null && now !== owner.startTime) return false
  return true
}

function processStartTime (pid: number): string | undefined {
  return procStat(pid)?.[19]
}

/** The fields of /proc/<pid>/stat after the command name (state first); undefined where there is no /proc. */
function procStat (pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name (field 2) may hold spaces and parentheses: count from its last ')'
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}
