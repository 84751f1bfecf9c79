/**
 * How the CLI tells "no node runs" (so balance and receipts read ledger.db
 * themselves) from "a node runs but is slow, or its answer broke off": real
 * HTTP servers on loopback standing in for the node.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { callApi } from '../../src/cli/api-client.ts'
import { lockDataDir } from '../../src/node/data-dir-lock.ts'
import type { DataDirLock } from '../../src/node/data-dir-lock.ts'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

const servers: Server[] = []
const locks: DataDirLock[] = []
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections()
    await new Promise(resolve => s.close(resolve))
  }
  for (const l of locks.splice(0)) l.release()
})

/** A data directory whose api.json points at `server`, as a running node's would; this process holds its lock, as that node would. */
async function dataDirFor (server: Server, pid = process.pid): Promise<string> {
  servers.push(server)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const dir = await mkdtemp(join(tmpdir(), 'sb-api-client-'))
  if (pid === process.pid) locks.push(lockDataDir(dir))
  await writeFile(join(dir, 'api.json'), JSON.stringify({ url: `http://127.0.0.1:${port}`, host: '127.0.0.1', port, pid, peerId: 'x' }))
  await writeFile(join(dir, 'api-token'), 'a'.repeat(64))
  // a node's directory has its identity (without one, the hint is init's)
  await writeFile(join(dir, 'identity.key'), '')
  return dir
}

describe('callApi', () => {
  it('a node that takes the request but does not answer in time is an error, not "no node is running"', async () => {
    const dir = await dataDirFor(createServer(() => {}))
    const err = await callApi(dir, '/v1/balance', { timeoutMs: 300 }).then(() => undefined, e => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.name).not.toBe('NodeNotRunningError')
    const { port } = servers[0].address() as AddressInfo
    expect(err.message).toBe(`the node for ${dir} at http://127.0.0.1:${port} (pid ${process.pid}) did not answer /v1/balance within 0.3 s: it is busy or stuck`)
    // a change it was asked for (pause, resume) may yet be made once it goes on: the operator is told to look
    const post = await callApi(dir, '/v1/exit/pause', { method: 'POST', body: {}, timeoutMs: 300 }).then(() => undefined, e => e)
    expect(post.message).toBe(`the node for ${dir} at http://127.0.0.1:${port} (pid ${process.pid}) did not answer /v1/exit/pause within 0.3 s: it is busy or stuck; the request was sent and may still take effect once the node goes on: check with "spareband status"`)
  }, 15_000)

  it('an answer cut short after its status (a node killed mid-export) is an error, not an empty answer', async () => {
    const dir = await dataDirFor(createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{\n  "format": "csv",\n  "text": "session_id,consumer')
      setTimeout(() => res.destroy(), 20)
    }))
    await expect(callApi(dir, '/v1/receipts?export=csv')).rejects.toThrow(/^\/v1\/receipts\?export=csv: the node's answer was cut short or is not JSON/)
  })

  it('nothing listening at api.json\'s address is "no node is running"', async () => {
    const server = createServer(() => {})
    const dir = await dataDirFor(server)
    servers.splice(0)
    await new Promise(resolve => server.close(resolve))
    await expect(callApi(dir, '/v1/balance')).rejects.toMatchObject({ name: 'NodeNotRunningError' })
  })

  it('an api.json whose process is gone is "no node is running", even when its port now answers (another node\'s API, any server)', async () => {
    // a node killed with SIGKILL: its api.json stays; its port went to a server that answers 401 to our token
    const dead = spawnSync(process.execPath, ['-e', '']).pid!
    const dir = await dataDirFor(createServer((_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' })
      res.end('{"error":"missing or wrong bearer token (see api-token in the data directory)"}')
    }), dead)
    const err = await callApi(dir, '/v1/balance').then(() => undefined, e => e)
    expect(err?.name).toBe('NodeNotRunningError')
    expect(err.message).toBe(`no node is running for ${dir}: the one that wrote api.json (pid ${dead}) is gone without cleaning up; start one with "spareband start --data-dir ${dir}"`)
  })

  it('an api.json whose pid runs but holds no lock on the directory (a pid used again) is "no node is running", and no token is sent', async () => {
    let asked = 0
    // pid 1 always runs; the port answers whatever it is sent
    const dir = await dataDirFor(createServer((_req, res) => { asked++; res.end('{}') }), 1)
    const err = await callApi(dir, '/v1/status').then(() => undefined, e => e)
    expect(err?.name).toBe('NodeNotRunningError')
    expect(err.message).toBe(`no node is running for ${dir}: the one that wrote api.json (pid 1) is gone without cleaning up; start one with "spareband start --data-dir ${dir}"`)
    expect(asked).toBe(0)
    // a node that holds the directory but whose api.json was deleted is named as running
    const lock = lockDataDir(dir)
    try {
      await rm(join(dir, 'api.json'))
      await expect(callApi(dir, '/v1/status')).rejects.toThrow(`the node running for ${dir} (pid ${process.pid}) has no api.json there, so its control API cannot be found: it is still starting, or the file was deleted (then restart the node, which writes it anew)`)
    } finally {
      lock.release()
    }
  })

  it('a corrupt api.json is said to be corrupt, not missing: with the node that holds the directory named, or as left by one gone', async () => {
    const dir = await dataDirFor(createServer((_req, res) => { res.end('{}') }))
    const file = join(dir, 'api.json')
    await writeFile(file, '{bad')
    const err = await callApi(dir, '/v1/status').then(() => undefined, e => e)
    expect(err?.name).toBe('NodeNotRunningError')
    // it said "has no api.json there ... it is still starting, or the file was deleted"
    expect(err.message).toMatch(new RegExp(`^the node running for ${dir} \\(pid ${process.pid}\\) cannot be asked: ${file} is corrupt \\(not valid JSON: .+\\), so its control API cannot be found; restart the node, which writes it anew$`))
    for (const [text, why] of [['[]', 'not a JSON object'], ['{"port": 7070}', 'no "url" and "pid" in it']]) {
      await writeFile(file, text)
      await expect(callApi(dir, '/v1/status')).rejects.toThrow(`the node running for ${dir} (pid ${process.pid}) cannot be asked: ${file} is corrupt (${why}), so its control API cannot be found; restart the node, which writes it anew`)
    }
    locks.splice(0).forEach(l => l.release())
    await expect(callApi(dir, '/v1/status')).rejects.toThrow(`no running node found for ${dir}, and ${file} is corrupt (no "url" and "pid" in it), left by a node that is gone; start one with "spareband start --data-dir ${dir}"`)
  })

  it('an api.json not whole yet (being written) is read again a moment later', async () => {
    const server = createServer((_req, res) => { res.end('{"ok":true}') })
    const dir = await dataDirFor(server)
    const { port } = server.address() as AddressInfo
    const whole = JSON.stringify({ url: `http://127.0.0.1:${port}`, host: '127.0.0.1', port, pid: process.pid, peerId: 'x' })
    await writeFile(join(dir, 'api.json'), whole.slice(0, 10))
    setTimeout(() => { void writeFile(join(dir, 'api.json'), whole) }, 50)
    expect(await callApi(dir, '/v1/status')).toEqual({ ok: true })
  })

  it('no node and no identity.key: the hint is init, which start would ask for', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sb-api-client-'))
    await expect(callApi(dir, '/v1/status')).rejects.toThrow(`no running node found for ${dir} (no api.json); it has no identity.key: create one with "spareband init --data-dir ${dir}", then start a node with "spareband start --data-dir ${dir}"`)
    await writeFile(join(dir, 'identity.key'), '')
    await expect(callApi(dir, '/v1/status')).rejects.toThrow(`no running node found for ${dir} (no api.json); start one with "spareband start --data-dir ${dir}"`)
  })

  it('a missing api-token is one line that says where it comes from, not a bare ENOENT', async () => {
    const dir = await dataDirFor(createServer((_req, res) => { res.end('{}') }))
    await rm(join(dir, 'api-token'))
    await expect(callApi(dir, '/v1/status')).rejects.toThrow(`cannot read the control API token ${join(dir, 'api-token')}, no such file (ENOENT): the node for ${dir} (pid ${process.pid}) wrote it at its start; if it was deleted, restart the node, which writes a new one`)
  })

  it('an api.json it cannot read (another user\'s data directory; here a directory in its place) is that error, not "no node is running"', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sb-api-client-'))
    locks.push(lockDataDir(dir))
    await mkdir(join(dir, 'api.json'))
    const err = await callApi(dir, '/v1/status').catch(e => e)
    expect(err.name).not.toBe('NodeNotRunningError')
    expect(err.message.startsWith(`cannot read ${join(dir, 'api.json')}, `)).toBe(true)
    expect(err.message).toContain('it is a directory (EISDIR)')
    expect(err.message).not.toContain('run this as the user')
    // none at all is still "no node", and says how to start one
    await rm(join(dir, 'api.json'), { recursive: true })
    expect((await callApi(dir, '/v1/status').catch(e => e)).name).toBe('NodeNotRunningError')
  })
})
