/** How CLI commands talk to the node running on the same data directory. */

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { API_TOKEN_FILE, readApiInfo } from '../node/control-api.ts'
import { NodeNotRunningError } from '../errors.ts'

/** How long a call may take unless it says otherwise. */
export const DEFAULT_API_TIMEOUT_MS = 10_000

/**
 * Calls the node's API. NodeNotRunningError only when no node is there (no
 * api.json, or nothing accepts the connection); a node that is there but
 * does not answer in `timeoutMs`, or whose answer is cut short, is another
 * error: callers that read ledger.db instead when no node runs must not
 * do so, and say no node runs, because a node is slow.
 */
export async function callApi<T = any> (dataDir: string, path: string, init: { method?: string, body?: unknown, timeoutMs?: number } = {}): Promise<T> {
  const info = await readApiInfo(dataDir)
  if (info == null) {
    throw new NodeNotRunningError(`no running node found for ${dataDir} (no api.json); start one with "spareband start --data-dir ${dataDir}"`)
  }
  const token = (await readFile(join(dataDir, API_TOKEN_FILE), 'utf8')).trim()
  const timeoutMs = init.timeoutMs ?? DEFAULT_API_TIMEOUT_MS
  const signal = AbortSignal.timeout(timeoutMs)
  const late = (): Error => new Error(`the node for ${dataDir} at ${info.url} (pid ${info.pid}) did not answer ${path} within ${timeoutMs / 1000} s: it is busy or stuck`)
  let res: Response
  try {
    res = await fetch(`${info.url}${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, ...(init.body != null ? { 'content-type': 'application/json' } : {}) },
      body: init.body != null ? JSON.stringify(init.body) : undefined,
      signal
    })
  } catch (err: any) {
    if (signal.aborted) throw late()
    throw new NodeNotRunningError(`the node for ${dataDir} does not answer at ${info.url} (${err.cause?.code ?? err.message}); is it still running (pid ${info.pid})?`)
  }
  let body: any
  try {
    body = await res.json()
  } catch (err: any) {
    if (signal.aborted) throw late()
    // an error answer may have no JSON body; a good one must be whole
    if (res.ok) throw new Error(`${path}: the node's answer was cut short or is not JSON (${err.message})`)
    body = {}
  }
  if (!res.ok) throw new Error(`${path}: ${res.status} ${body.error ?? res.statusText}`)
  return body as T
}
