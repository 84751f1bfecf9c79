/**
 * Receipt signatures checked on worker threads (signature-worker.ts), for
 * verifying large exports: two Ed25519 checks per receipt are about four
 * fifths of the time, and they are independent, so every core helps. The
 * caller keeps everything that depends on order (monotonicity, totals) and
 * sends batches; each answer names the batch's first bad signature.
 */

import { Worker } from 'node:worker_threads'

/** The signature checks of one receipt. */
export interface SignatureJob {
  /** The entry's index in its file, reported back when a signature fails. */
  index: number
  data: Uint8Array
  consumerKey: Uint8Array
  exitKey: Uint8Array
  consumerSig: Uint8Array
  exitSig: Uint8Array
}

/** A batch's first entry whose signature does not verify, and whose it is. */
export interface SignatureFailure {
  index: number
  which: 'consumer' | 'exit'
}

const FIXED_BYTES = 6 + 32 + 32 + 64 + 64

/** A checking thread failed or went away: the checks it had are unanswered, so the verdict is unknown (not the file's fault). */
export class SignatureThreadError extends Error {
  static name = 'SignatureThreadError'
  constructor (message: string) {
    super(message)
    this.name = 'SignatureThreadError'
  }
}

// from source (tests, under type stripping) the worker is a .ts file, built a .js one
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './signature-worker.ts' : './signature-worker.js', import.meta.url)

export class SignaturePool {
  private readonly workers: Worker[] = []
  private readonly waiting = new Map<number, { resolve: (f: SignatureFailure | undefined) => void, reject: (err: Error) => void }>()
  private nextId = 0
  private nextWorker = 0
  private closing = false

  /** `size` threads, started when the first batch comes; `workerUrl` for tests. */
  constructor (readonly size: number, private readonly workerUrl: URL = WORKER_URL) {}

  /** Checks a batch; resolves with its first failure, if any. */
  async check (jobs: SignatureJob[]): Promise<SignatureFailure | undefined> {
    if (this.failed != null) throw this.failed
    if (this.workers.length === 0) this.start()
    let length = 0
    for (const job of jobs) length += FIXED_BYTES + job.data.byteLength
    const buffer = new ArrayBuffer(length)
    const bytes = new Uint8Array(buffer)
    const view = new DataView(buffer)
    let at = 0
    for (const job of jobs) {
      view.setUint32(at, job.index)
      view.setUint16(at + 4, job.data.byteLength)
      at += 6
      for (const part of [job.consumerKey, job.exitKey, job.consumerSig, job.exitSig, job.data]) {
        bytes.set(part, at)
        at += part.byteLength
      }
    }
    const id = this.nextId++
    const worker = this.workers[this.nextWorker++ % this.workers.length]
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject })
      worker.postMessage({ id, buffer, count: jobs.length }, [buffer])
    })
  }

  private start (): void {
    for (let i = 0; i < this.size; i++) {
      const worker = new Worker(this.workerUrl)
      worker.on('message', (answer: { id: number, index: number, which: number }) => {
        const waiting = this.waiting.get(answer.id)
        this.waiting.delete(answer.id)
        waiting?.resolve(answer.index === -1 ? undefined : { index: answer.index, which: answer.which === 1 ? 'consumer' : 'exit' })
      })
      worker.on('error', err => this.fail(new SignatureThreadError(`a signature-checking thread failed: ${err.message}`)))
      // a thread that ends on its own (killed, out of memory) would leave its checks waiting for ever
      worker.on('exit', code => { if (!this.closing) this.fail(new SignatureThreadError(`a signature-checking thread ended (exit code ${code}) with checks unanswered`)) })
      this.workers.push(worker)
    }
  }

  private failed?: SignatureThreadError

  private fail (err: SignatureThreadError): void {
    this.failed ??= err
    for (const { reject } of this.waiting.values()) reject(err)
    this.waiting.clear()
  }

  /** Ends the threads (they keep the process alive until then). */
  async close (): Promise<void> {
    this.closing = true
    await Promise.all(this.workers.map(async w => w.terminate()))
    this.workers.length = 0
  }
}
