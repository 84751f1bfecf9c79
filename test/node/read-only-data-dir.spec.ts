/**
 * A data directory on a file system mounted read-only: the node says the
 * directory must be writable, naming it, rather than a bare EROFS on its
 * lock file; and the ledger a node closed there still reads (what
 * `spareband balance` and `receipts` do with no node running), though
 * SQLite cannot make the -shm file a WAL database is read with. A real
 * tmpfs remounted read-only (needs root to mount; skipped otherwise).
 */
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { createIdentity } from '../../src/node/identity.ts'
import { countersigned, parties } from '../accounting/fixtures.ts'

const root = process.getuid?.() === 0

describe.skipIf(!root)('a data directory on a read-only file system (skipped unless root)', () => {
  let dir: string
  let disk: string
  let mounted = false

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-ro-'))
    disk = join(dir, 'disk')
    await mkdir(disk)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', disk])
    mounted = true
    await mkdir(join(disk, 'node'))
    // a ledger as a node leaves it when it stops: its WAL checkpointed into the file and gone
    const [consumer, exit] = await parties(2)
    const ledger = Ledger.open(join(disk, 'ledger.db'))
    for (let i = 0; i < 3; i++) await ledger.recordReceipt(await countersigned(consumer, exit, { sessionId: `s-${i}` }), 'gossip')
    ledger.close()
    execFileSync('mount', ['-o', 'remount,ro', disk])
  })
  afterAll(async () => {
    if (mounted) execFileSync('umount', ['-l', disk])
    await rm(dir, { recursive: true, force: true })
  })

  it('is refused naming the directory and why, before anything else is tried', async () => {
    const dataDir = join(disk, 'node')
    const err = await createSparebandNode({ dataDir, controlApi: false, config: { listen: [] } }).catch(e => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toBe(`cannot write in the data directory ${dataDir} (the file system is read-only, EROFS): a node keeps its lock, identity and ledger there, so it needs a writable one (--data-dir, SPAREBAND_DATA_DIR)`)
  })

  it('init says the same of a new identity, naming the directory, and changes nothing', async () => {
    const dataDir = join(disk, 'node')
    const err = await createIdentity(dataDir, { force: true }).catch(e => e)
    expect(err.message).toBe(`cannot write a new identity in the data directory ${dataDir} (the file system is read-only, EROFS): nothing was changed; make it writable, or use another --data-dir`)
    expect(await readdir(dataDir)).toEqual([])
  })

  it('still reads a ledger a node closed there, creating nothing', async () => {
    const ledger = Ledger.open(join(disk, 'ledger.db'), { readOnly: true })
    try {
      expect(ledger.receipts().map(r => r.receipt.sessionId).sort()).toEqual(['s-0', 's-1', 's-2'])
    } finally {
      ledger.close()
    }
  })
})
