import { describe, it, expect } from 'vitest'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import { dataDirOwner } from '../../src/node/data-dir-lock.ts'
import type { SparebandConfigInput } from '../../src/index.ts'

const config: SparebandConfigInput = {
  listen: ['/ip4/127.0.0.1/tcp/0'],
  api: { port: 0 },
  proxy: { socks_port: 0, http_port: 0 },
  network: { local_testnet: true },
  accounting: { pow_difficulty: 8 }
}

/** Two nodes on one data directory would be one identity twice, two writers of one ledger and its journal, and each other's api.json. */
describe('one node per data directory', () => {
  it('a second node on a data directory in use is refused with DataDirInUseError; once the first stops, a new one starts', async () => {
    const dataDir = await tempDir('sb-lock-')
    const first = await createSparebandNode({ dataDir, config })
    await first.start()
    try {
      const second = await createSparebandNode({ dataDir, config }).catch(err => err)
      expect(second).toHaveProperty('name', 'DataDirInUseError')
      expect(second.dataDir).toBe(dataDir)
      expect(second.message).toContain(dataDir)
      // the first node's api.json is still its own (the second one's stop used to delete it)
      expect(JSON.parse(readFileSync(join(dataDir, 'api.json'), 'utf8')).url).toBe(first.apiUrl)
      expect((first.status() as any).accounting.enabled).toBe(true)
    } finally {
      await first.stop()
    }
    const next = await createSparebandNode({ dataDir, config })
    await next.start()
    expect(next.peerId.equals(first.peerId)).toBe(true)
    await next.stop()
  })

  it('a node in another process holds its data directory', async () => {
    const dataDir = await tempDir('sb-lock-other-')
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'])
    try {
      writeFileSync(join(dataDir, 'node.lock'), JSON.stringify({ pid: other.pid }))
      const refused = await createSparebandNode({ dataDir, config }).catch(err => err)
      expect(refused).toHaveProperty('name', 'DataDirInUseError')
      expect(refused.pid).toBe(other.pid)
      expect(refused.message).toContain(`pid ${other.pid}`)
      // and it touched nothing: no identity was made
      expect(existsSync(join(dataDir, 'identity.key'))).toBe(false)
    } finally {
      other.kill()
    }
  })

  it('a lock left by a process that is gone (killed) does not stand in the way', async () => {
    const dataDir = await tempDir('sb-lock-stale-')
    // a pid that surely is not running: a child that has exited
    const child = spawn(process.execPath, ['-e', ''])
    const pid = child.pid!
    await new Promise(resolve => child.once('exit', resolve))
    const node = await createSparebandNode({ dataDir, config })
    await node.stop()
    writeFileSync(join(dataDir, 'node.lock'), JSON.stringify({ pid }))
    const again = await createSparebandNode({ dataDir, config })
    await again.start()
    expect(JSON.parse(readFileSync(join(dataDir, 'node.lock'), 'utf8')).pid).toBe(process.pid)
    await again.stop()
    expect(existsSync(join(dataDir, 'node.lock'))).toBe(false)
  })
})

describe('a lock whose process is a zombie', () => {
  it('does not stand in the way: the process has exited, only its parent has not reaped it', async () => {
    const dataDir = await tempDir('sb-lock-zombie-')
    // sh starts a child that exits in 0.3 s, and has become by then a sleep that never reaps it
    const parent = spawn('sh', ['-c', 'sleep 0.3 & echo $!; exec sleep 30'])
    try {
      const pid = Number(await new Promise<string>(resolve => parent.stdout.once('data', d => resolve(String(d).trim()))))
      const state = (): string => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); return s.slice(s.lastIndexOf(')') + 2).split(' ')[0] }
      await waitFor(() => state() === 'Z', { what: 'the child to be a zombie' })
      writeFileSync(join(dataDir, 'node.lock'), JSON.stringify({ pid }))
      expect(dataDirOwner(dataDir)).toBeUndefined()
      const node = await createSparebandNode({ dataDir, config })
      await node.start()
      expect(JSON.parse(readFileSync(join(dataDir, 'node.lock'), 'utf8')).pid).toBe(process.pid)
      await node.stop()
    } finally {
      parent.kill()
    }
  })
})

describe('a data directory whose ledger is another identity\'s', () => {
  it('createSparebandNode() rejects with the exported LedgerError (code WRONG_IDENTITY), and leaves the directory free', async () => {
    const { LedgerError, LedgerErrorCode } = await import('../../src/index.ts') as any
    const a = await tempDir('sb-ledger-a-')
    const b = await tempDir('sb-ledger-b-')
    await (await createSparebandNode({ dataDir: a, config })).stop()
    await (await createSparebandNode({ dataDir: b, config })).stop()
    // b's identity with a's ledger: a data-directory mix-up an app must be able to tell apart
    const { copyFileSync } = await import('node:fs')
    copyFileSync(join(a, 'ledger.db'), join(b, 'ledger.db'))
    for (let i = 0; i < 2; i++) {
      const err = await createSparebandNode({ dataDir: b, config }).catch(e => e)
      expect(LedgerError).toBeTypeOf('function')
      expect(err).toBeInstanceOf(LedgerError)
      expect(err.code).toBe(LedgerErrorCode.WRONG_IDENTITY)
    }
    expect(existsSync(join(b, 'node.lock'))).toBe(false)
  })
})

describe.skipIf(process.getuid?.() !== 0)('the lock on a full disk (skipped unless root: a real tmpfs)', () => {
  it('is refused naming the directory and why, and leaves no half-made file behind', async () => {
    const { execFileSync } = await import('node:child_process')
    const { mkdir, readdir, rm, writeFile } = await import('node:fs/promises')
    const { lockDataDir } = await import('../../src/node/data-dir-lock.ts')
    const disk = await tempDir('sb-lock-full-')
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk])
    try {
      const dataDir = join(disk, 'node')
      await mkdir(dataDir)
      await writeFile(join(disk, 'filler'), Buffer.alloc(1024 * 1024)).catch((err: any) => { expect(err.code).toBe('ENOSPC') })
      expect(() => lockDataDir(dataDir)).toThrow(`cannot write in the data directory ${dataDir} (the disk is full, ENOSPC)`)
      expect(await readdir(dataDir)).toEqual([])
    } finally {
      execFileSync('umount', ['-l', disk])
      await rm(disk, { recursive: true, force: true })
    }
  })
})
