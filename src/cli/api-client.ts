/** How CLI commands talk to the node running on the same data directory. */

import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { API_INFO_FILE, API_TOKEN_FILE, readApiInfo } from '../node/control-api.ts'
import { ApiInfoCorruptError, NodeNotRunningError } from '../errors.ts'
import { describeFsError } from './errors.ts'
import { dataDirOwner } from '../node/data-dir-lock.ts'
import { IDENTITY_FILE } from '../node/identity.ts'
import type { ApiInfo } from '../node/control-api.ts'

/** The node answered `path` with an error status: `message` says which, and what it said. */
export class ApiStatusError extends Error {
  static name = 'ApiStatusError'
  constructor (readonly path: string, readonly status: number, said: string) {
    super(`${path}: ${status} ${said}`)
    this.name = 'ApiStatusError'
  }
}

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
  const { info, token } = await nodeOf(dataDir)
  const timeoutMs = init.timeoutMs ?? DEFAULT_API_TIMEOUT_MS
  const signal = AbortSignal.timeout(timeoutMs)
  // a change asked of a stuck node (SIGSTOP, a long pause) is done when it goes on: not a failure to rely on
  const mayApply = (init.method ?? 'GET') === 'GET' ? '' : '; the request was sent and may still take effect once the node goes on: check with "spareband status"'
  const late = (): Error => new Error(`the node for ${dataDir} at ${info.url} (pid ${info.pid}) did not answer ${path} within ${timeoutMs / 1000} s: it is busy or stuck${mayApply}`)
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
    throw notAnswering(dataDir, info, err)
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
  if (!res.ok) throw new ApiStatusError(path, res.status, body.error ?? res.statusText)
  return body as T
}

/**
 * GETs a long answer (an export) from the node and hands out its body as
 * it arrives, so the caller never holds it whole. Errors as callApi()'s,
 * but the time limit is per wait: the node may take any time in all, as
 * long as it never stays silent for `idleTimeoutMs`. A body cut short (the
 * node died) makes the iteration throw, naming how much had come.
 */
export async function callApiStream (dataDir: string, path: string, init: { idleTimeoutMs?: number } = {}): Promise<AsyncIterable<Uint8Array>> {
  const { info, token } = await nodeOf(dataDir)
  const idleMs = init.idleTimeoutMs ?? DEFAULT_API_TIMEOUT_MS
  const controller = new AbortController()
  let timer = setTimeout(() => controller.abort(), idleMs)
  const silent = (what: string): Error => new Error(`the node for ${dataDir} at ${info.url} (pid ${info.pid}) sent nothing of ${path} for ${idleMs / 1000} s${what}: it is busy or stuck`)
  let res: Response
  try {
    res = await fetch(`${info.url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal })
  } catch (err: any) {
    clearTimeout(timer)
    if (controller.signal.aborted) throw silent('')
    throw notAnswering(dataDir, info, err)
  }
  if (!res.ok) {
    clearTimeout(timer)
    const body: any = await res.json().catch(() => ({}))
    throw new ApiStatusError(path, res.status, body.error ?? res.statusText)
  }
  const body = res.body
  if (body == null) {
    clearTimeout(timer)
    throw new Error(`${path}: the node's answer has no body`)
  }
  return (async function * () {
    let received = 0
    try {
      for await (const chunk of body) {
        received += chunk.byteLength
        clearTimeout(timer)
        timer = setTimeout(() => controller.abort(), idleMs)
        yield chunk
      }
    } catch (err: any) {
      if (controller.signal.aborted) throw silent(` after ${received} bytes`)
      throw new Error(`the node for ${dataDir} (pid ${info.pid}) broke off its answer to ${path} after ${received} bytes (${err.cause?.code ?? err.cause?.message ?? err.message}): did it stop?`)
    } finally {
      clearTimeout(timer)
      // a caller that stops early closes the connection, which stops the node's export
      controller.abort()
    }
  })()
}

/** Where the node of `dataDir` listens (api.json) and its token; NodeNotRunningError when there is no api.json. */
export async function nodeOf (dataDir: string): Promise<{ info: ApiInfo, token: string }> {
  let info: ApiInfo | undefined
  try {
    info = await readApiInfo(dataDir)
  } catch (err: any) {
    if (err instanceof ApiInfoCorruptError) {
      // the node running on the directory holds its lock (node.lock, with its pid and start time)
      const owner = dataDirOwner(dataDir)
      if (owner != null) throw new NodeNotRunningError(`the node running for ${dataDir} (pid ${owner}) cannot be asked: ${err.message}, so its control API cannot be found; restart the node, which writes it anew`)
      throw new NodeNotRunningError(`no running node found for ${dataDir}, and ${err.message}, left by a node that is gone; ${startHint(dataDir)}`)
    }
    const hint = err?.code === 'EACCES' || err?.code === 'EPERM' ? ': run this as the user the node runs as (the data directory and its files are that user\'s alone)' : ''
    throw new Error(`cannot read ${join(dataDir, API_INFO_FILE)}, ${describeFsError(err)}${hint}`)
  }
  // the node running on the directory holds its lock (node.lock, with its pid and start time)
  const owner = dataDirOwner(dataDir)
  if (info == null) {
    if (owner != null) throw new NodeNotRunningError(`the node running for ${dataDir} (pid ${owner}) has no api.json there, so its control API cannot be found: it is still starting, or the file was deleted (then restart the node, which writes it anew)`)
    throw new NodeNotRunningError(`no running node found for ${dataDir} (no api.json); ${startHint(dataDir)}`)
  }
  // killed, or the machine went down: its api.json stays, and its port may since serve someone
  // else (another node's API, any server), which must not be sent the token. Its pid may since
  // be another process's too: the node holding the directory's lock is the one to ask
  if (owner !== info.pid) {
    if (owner != null) throw new NodeNotRunningError(`the api.json in ${dataDir} is stale: it was written by pid ${info.pid}, and the node running there now is pid ${owner}, which has not written its own yet; try again in a moment`)
    throw new NodeNotRunningError(`no node is running for ${dataDir}: the one that wrote api.json (pid ${info.pid}) is gone without cleaning up; ${startHint(dataDir)}`)
  }
  const tokenFile = join(dataDir, API_TOKEN_FILE)
  let token: string
  try {
    token = (await readFile(tokenFile, 'utf8')).trim()
  } catch (err: any) {
    // the node reads its token once, at start; one deleted since is written anew at the next start
    throw new Error(`cannot read the control API token ${tokenFile}, ${describeFsError(err)}: the node for ${dataDir} (pid ${info.pid}) wrote it at its start; if it was deleted, restart the node, which writes a new one`)
  }
  return { info, token }
}

function notAnswering (dataDir: string, info: ApiInfo, err: any): NodeNotRunningError {
  return new NodeNotRunningError(`the node for ${dataDir} does not answer at ${info.url} (${err.cause?.code ?? err.message}); is it still running (pid ${info.pid})?`)
}

/** What to run for a node on `dataDir`: start, or first init when it has no identity (start would only ask for it). */
function startHint (dataDir: string): string {
  if (!existsSync(join(dataDir, IDENTITY_FILE))) return `it has no ${IDENTITY_FILE}: create one with "spareband init --data-dir ${dataDir}", then start a node with "spareband start --data-dir ${dataDir}"`
  return `start one with "spareband start --data-dir ${dataDir}"`
}
