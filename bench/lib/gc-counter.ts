/**
 * Full garbage collections (V8 mark-compacts) in this process, counted as
 * they happen. A busy node that runs them every few MiB pays for them on
 * its main thread and on V8's marking threads; the accounting bench reports
 * them per transfer, since they once were most of what accounting cost (see
 * src/node/runtime-flags.ts).
 */

import { PerformanceObserver, constants } from 'node:perf_hooks'

export interface FullCollections {
  count: number
}

const seen: FullCollections = { count: 0 }
let observer: PerformanceObserver | undefined

/** Starts counting (once per process). */
export function countFullCollections (): void {
  if (observer != null) return
  observer = new PerformanceObserver(list => {
    for (const entry of list.getEntries()) {
      // a 'gc' entry's detail says which collection it was
      if (((entry as unknown as { detail?: { kind?: number } }).detail)?.kind !== constants.NODE_PERFORMANCE_GC_MAJOR) continue
      seen.count++
    }
  })
  observer.observe({ entryTypes: ['gc'] })
}

/** Full collections since counting started. */
export function fullCollections (): FullCollections {
  return { ...seen }
}
