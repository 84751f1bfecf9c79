/**
 * First SIGINT/SIGTERM/SIGHUP: stop cleanly, with a deadline. Second signal,
 * or the deadline passing: exit at once. SIGHUP is what a node started in a
 * terminal gets when the terminal or the ssh session closes; left to node's
 * default it died on the spot, with its quota counters unsaved and api.json
 * left behind.
 */

import { log } from './output.ts'

export const SHUTDOWN_DEADLINE_MS = 5000

export function onGracefulShutdown (stop: () => Promise<void>, options: { deadlineMs?: number } = {}): void {
  const deadline = options.deadlineMs ?? SHUTDOWN_DEADLINE_MS
  let stopping = false
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log('warn', 'second signal, exiting now', { signal })
      process.exit(130)
    }
    stopping = true
    log('info', 'stopping', { signal })
    const timer = setTimeout(() => {
      log('error', 'clean stop took too long, exiting', { deadlineMs: deadline })
      process.exit(1)
    }, deadline)
    timer.unref()
    stop().then(() => {
      clearTimeout(timer)
      log('info', 'stopped')
      process.exit(0)
    }, (err: any) => {
      log('error', 'error while stopping', { error: err?.message ?? String(err) })
      process.exit(1)
    })
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  process.on('SIGHUP', handler)
}
