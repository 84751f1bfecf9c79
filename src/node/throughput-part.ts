/**
 * The last five minutes of the exit's and the proxy's byte counters,
 * sampled every two seconds, at `GET /v1/throughput`: the dashboard's
 * chart starts from them, so a reload (or a second tab) does not start
 * from an empty chart. Totals, not rates: a client works out the rate
 * between two samples the way it does between two `status` answers.
 */

import { second } from '../constants.ts'
import type { NodePart, SparebandNode } from './spareband-node.ts'

export const THROUGHPUT_SAMPLE_MS = 2 * second
/** 150 samples: the dashboard chart's five minutes. */
export const THROUGHPUT_SAMPLES = 150

/** A sample: ms since the epoch, then the exit's and the proxy's bytes in + out (null when the node has none). */
export type ThroughputSample = [at: number, exit: number | null, proxy: number | null]

interface Counters { enabled?: boolean, bytesIn: number, bytesOut: number }

export class ThroughputHistory {
  private readonly samples: ThroughputSample[] = []
  private timer?: NodeJS.Timeout

  constructor (private readonly read: () => { exit?: Counters, proxy?: Counters }, private readonly now: () => number = Date.now) {}

  sample (): void {
    const { exit, proxy } = this.read()
    const total = (c: Counters | undefined): number | null => c == null || c.enabled === false ? null : c.bytesIn + c.bytesOut
    this.samples.push([this.now(), total(exit), total(proxy)])
    if (this.samples.length > THROUGHPUT_SAMPLES) this.samples.shift()
  }

  start (): void {
    this.sample()
    this.timer = setInterval(() => { this.sample() }, THROUGHPUT_SAMPLE_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  history (): { intervalMs: number, samples: ThroughputSample[] } {
    return { intervalMs: THROUGHPUT_SAMPLE_MS, samples: [...this.samples] }
  }
}

export function throughputPart (node: SparebandNode): NodePart {
  const history = new ThroughputHistory(() => ({
    exit: node.part('exit')?.status?.() as Counters | undefined,
    proxy: node.part('proxy')?.status?.() as Counters | undefined
  }))
  return {
    name: 'throughput',
    start: async () => { history.start() },
    stop: async () => { history.stop() },
    routes: {
      throughput: { get: () => history.history() }
    }
  }
}
