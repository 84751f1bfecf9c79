/** How CLI commands talk to the node running on the same data directory. */

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { API_TOKEN_FILE, readApiInfo } from '../node/control-api.ts'
import { NodeNotRunningError } from '../errors.ts'

/** `timeoutMs`: how long the node may take to answer (default 10 s). */
export async function callApi<T = any> (dataDir: string, path: string, init: { method?: string, body?: unknown, timeoutMs?: number } = {}): Promise<T> {
  const info = await readApiInfo(dataDir)
  if (info == null) {
    throw new NodeNotRunningError(`no running node found for ${dataDir} (no api.json); start one with "spareband start --data-dir ${dataDir}"`)
  }
  const token = (await readFile(join(dataDir, API_TOKEN_FILE), 'utf8')).trim()
  let res: Response
  try {
    res = await fetch(`${info.url}${path}`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, ...(init.body != null ? { 'content-type': 'application/json' } : {}) },
      body: init.body != null ? JSON.stringify(init.body) : undefined,
      signal: AbortSignal.timeout(init.timeoutMs ?? 10_000)
    })
  } catch (err: any) {
    throw new NodeNotRunningError(`the node for ${dataDir} does not answer at ${info.url} (${err.cause?.code ?? err.message}); is it still running (pid ${info.pid})?`)
  }
  const body: any = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(`${path}: ${res.status} ${body.error ?? res.statusText}`)
  return body as T
}
