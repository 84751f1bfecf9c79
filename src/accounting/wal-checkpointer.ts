/**
 * Checkpoints a WAL database from a worker thread.
 *
 * SQLite's automatic checkpoint runs inside the commit that crosses the
 * threshold, on the caller's thread. With `synchronous=NORMAL` that
 * checkpoint is the only place SQLite calls fsync, so on a busy node every
 * few hundredth receipt stalled the event loop (and every tunnel on it) for
 * 20-30 ms. Here a second connection on a worker thread checkpoints
 * (PASSIVE: never blocking the writer) a few times a second instead, and the
 * writer's own automatic checkpoint is turned off. Should the worker fail,
 * the writer checkpoints for itself again.
 */

import { Worker } from 'node:worker_threads'
import type { DatabaseSync } from 'node:sqlite'

/** SQLite's default for the automatic checkpoint, in WAL pages. */
const AUTOCHECKPOINT_PAGES = 1000

const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { DatabaseSync } = require('node:sqlite')
const db = new DatabaseSync(workerData.file)
db.exec('PRAGMA busy_timeout = 2000')
const checkpoint = () => { try { db.exec('PRAGMA wal_checkpoint(PASSIVE)') } catch {} }
const timer = setInterval(checkpoint, workerData.intervalMs)
parentPort.on('message', msg => {
  if (msg !== 'stop') return
  clearInterval(timer)
  db.close()
  parentPort.close()
})
`

export class WalCheckpointer {
  private readonly worker: Worker
  private stopped = false
  private readonly exited: Promise<void>

  constructor (private readonly writer: DatabaseSync, file: string, intervalMs = 250) {
    writer.exec('PRAGMA wal_autocheckpoint = 0')
    this.worker = new Worker(SOURCE, { eval: true, workerData: { file, intervalMs } })
    // never what keeps a process alive
    this.worker.unref()
    this.worker.once('error', () => this.fallBack())
    this.exited = new Promise(resolve => this.worker.once('exit', () => {
      this.fallBack()
      resolve()
    }))
  }

  /**
   * Stops the worker (the ledger is closing). The WAL left behind is
   * checkpointed when the last connection to the file closes, or by the next
   * open: nothing in it is lost. Resolves once the worker's connection is
   * closed: SQLite may still remove the -wal and -shm files until then, so a
   * caller that moves or deletes the directory waits for it.
   */
  async stop (): Promise<void> {
    if (!this.stopped) {
      this.stopped = true
      // held by the loop while it winds down: unref'd, the process could exit before its 'exit' event, and an app's top-level `await node.stop()` would never settle
      this.worker.ref()
      this.worker.postMessage('stop')
    }
    await this.exited
  }

  private fallBack (): void {
    if (this.stopped) return
    this.stopped = true
    try { this.writer.exec(`PRAGMA wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`) } catch {}
  }
}
