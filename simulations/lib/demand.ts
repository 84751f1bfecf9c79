/**
 * Demand: each consumer fetches objects from the origin through exits of
 * the regions its schedule names, a few requests at a time, as an app
 * embedding the node would (`node.connect()`, then plain HTTP/1.1 over the
 * tunnel). A failed attempt is retried through whichever exit the node
 * picks next, as a scraper would; every answer's body is hashed.
 */

import { createHash } from 'node:crypto'
import { get } from 'node:http'
import { mulberry32 } from '../../src/routing/random.ts'
import type { SimNetwork, SimNode } from './network.ts'
import type { OriginObject } from './origin.ts'

export interface DemandSpec {
  /** Requests per consumer. */
  requestsPerConsumer: number
  /** Requests each consumer has in flight at once. */
  concurrency: number
  /** Attempts per request before it counts as failed. */
  attempts: number
  /** Regions a consumer's requests go to, drawn uniformly. @default every region */
  regions?: string[]
  /** Ms an attempt may take, from connect() to the last byte. */
  attemptTimeoutMs: number
}

export interface Attempt {
  ok: boolean
  /** The exit's peer id, when a tunnel opened. */
  exit?: string
  /** Why it failed: the error's name and message, or what was wrong with the answer. */
  error?: string
  /** From connect() to the exit's answer (finding an exit, its DNS and connect), when a tunnel opened. */
  setupMs?: number
  /** The exit's refusal (INSUFFICIENT_CREDIT, BUSY, ...), when it refused. */
  refusal?: string
  ms: number
  /** Body bytes received. */
  bytes: number
}

export interface RequestRecord {
  consumer: string
  region: string
  object: number
  /** performance.now() when its first attempt started. */
  startedAt: number
  /** Whether some attempt brought back the object byte for byte. */
  delivered: boolean
  attempts: Attempt[]
}

/** Which region and object each of a consumer's requests asks for: the same for the same seed. */
export function schedule (seed: number, count: number, regions: string[], objects: number): Array<{ region: string, object: number }> {
  const random = mulberry32(seed)
  return Array.from({ length: count }, () => ({
    region: regions[Math.floor(random() * regions.length)],
    object: Math.floor(random() * objects)
  }))
}

/**
 * Runs every consumer's schedule to the end. `onProgress` is called after
 * each request with how many are done (the churn driver keys on it).
 */
export async function runDemand (net: SimNetwork, objects: OriginObject[], spec: DemandSpec, seed: number, onProgress: (done: number, total: number) => void | Promise<void> = () => {}): Promise<RequestRecord[]> {
  const records: RequestRecord[] = []
  const total = net.consumers.length * spec.requestsPerConsumer
  let done = 0
  await Promise.all(net.consumers.map(async (consumer, i) => {
    const queue = schedule(seed + i, spec.requestsPerConsumer, spec.regions ?? net.spec.regions, objects.length)
    const worker = async (): Promise<void> => {
      for (let next = queue.shift(); next != null; next = queue.shift()) {
        const record: RequestRecord = { consumer: consumer.name, region: next.region, object: next.object, startedAt: performance.now(), delivered: false, attempts: [] }
        for (let a = 0; a < spec.attempts && !record.delivered; a++) {
          const attempt = await fetchThrough(consumer, net.originPort, next.region, next.object, objects[next.object], spec.attemptTimeoutMs)
          record.attempts.push(attempt)
          record.delivered = attempt.ok
        }
        records.push(record)
        await onProgress(++done, total)
      }
    }
    await Promise.all(Array.from({ length: spec.concurrency }, worker))
  }))
  return records
}

/** One GET of `/obj/<index>` through an exit in `region`; never throws. */
export async function fetchThrough (consumer: SimNode, originPort: number, region: string, index: number, expected: OriginObject, timeoutMs: number): Promise<Attempt> {
  const started = performance.now()
  const signal = AbortSignal.timeout(timeoutMs)
  let exit: string | undefined
  let setupMs: number | undefined
  let bytes = 0
  try {
    const socket = await consumer.node.connect('127.0.0.1', originPort, { region, signal })
    exit = socket.exit
    setupMs = socket.setupMs
    // node:http over the tunnel (as an app with its own Agent would), the body hashed as it comes
    const answer = await new Promise<{ status: number, bytes: number, sha256: string }>((resolve, reject) => {
      const req = get({ host: '127.0.0.1', port: originPort, path: `/obj/${index}`, headers: { connection: 'close' }, createConnection: () => socket as any, signal }, res => {
        const hash = createHash('sha256')
        let n = 0
        res.on('data', (c: Buffer) => { hash.update(c); n += c.byteLength; bytes = n })
        res.once('end', () => resolve({ status: res.statusCode ?? 0, bytes: n, sha256: hash.digest('hex') }))
        res.once('error', reject)
      })
      req.once('error', reject)
    })
    if (answer.status !== 200) throw new Error(`origin answered ${answer.status}`)
    if (answer.sha256 !== expected.sha256) throw new Error(`body of ${answer.bytes} bytes does not match the object (${expected.bytes.byteLength} bytes)`)
    return { ok: true, exit, setupMs, ms: performance.now() - started, bytes }
  } catch (err: any) {
    const refusal = typeof err?.status === 'string' ? err.status : undefined
    return { ok: false, exit, setupMs, error: `${err?.name ?? 'Error'}: ${err?.message ?? String(err)}`, refusal, ms: performance.now() - started, bytes }
  }
}
