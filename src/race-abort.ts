/**
 * `promise`, or the signal's reason as soon as `signal` aborts, whichever
 * comes first. The promise runs on; its failure after an abort is ignored
 * (no unhandled rejection). Without a signal, the promise itself.
 */
export async function raceAbort<T> (promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal == null) return promise
  promise.catch(() => {})
  signal.throwIfAborted()
  let onAbort: () => void = () => {}
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}
