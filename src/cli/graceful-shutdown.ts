/**
 * First SIGINT/SIGTERM/SIGHUP: stop cleanly, with a deadline. Second signal,
 * or the deadline passing: exit at once. SIGHUP is what a node started in a
 * terminal gets when the terminal or the ssh session closes; left to node's
 * default it died on the spot, with its quota counters unsaved and api.json
 * left behind.
 */

import { log } from './output.ts'

export const SHUTDOWN_DEADLINE_MS = 5000

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

let early: NodeJS.Signals | undefined
const noteEarly = (signal: NodeJS.Signals): void => { early ??= signal }

/**
 * Holds the signals that come before onGracefulShutdown() is set up (the
 * command line and libp2p loading, the node being made: half a second or
 * more under load), which node's default handling turned into a death by
 * signal (exit 143 or 130) with no line logged. onGracefulShutdown() acts
 * on the first of them at once.
 */
export function catchEarlySignals (): void {
  for (const s of SIGNALS) process.on(s, noteEarly)
}

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
  for (const s of SIGNALS) {
    // added before the other goes: with no listener left for a moment, node stops watching the
    // signal, and one it had received but not yet dispatched was lost (the node then ran on)
    process.on(s, handler)
    process.off(s, noteEarly)
  }
  if (early != null) handler(early)
}
