/**
 * The proof-of-work search on a worker thread (see solvePowInWorker): the
 * very solvePow of credits.ts, so the two cannot drift apart.
 */

import { parentPort, workerData } from 'node:worker_threads'
import { solvePow } from './credits.ts'

const { peerIdBytes, difficultyBits } = workerData as { peerIdBytes: Uint8Array, difficultyBits: number }
// no one else runs on this thread: no need to yield to its event loop between batches
parentPort?.postMessage(await solvePow(peerIdBytes, difficultyBits, { batch: Number.MAX_SAFE_INTEGER }))
