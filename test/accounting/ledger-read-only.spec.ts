/**
 * Ledger.open(file, { readOnly: true }): what the CLI reads when no node
 * runs. It sees what the node wrote (a WAL a killed node left too), never
 * changes the file, and refuses what a writable open refuses.
 */
import { createHash } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { copyFile, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Ledger } from '../../src/accounting/ledger.ts'
import { LedgerErrorCode } from '../../src/accounting/errors.ts'
import { solvePow } from '../../src/accounting/credits.ts'
import { DEFAULT_POW_DIFFICULTY } from '../../src/accounting/constants.ts'
import { writeUntilKilled } from './killed-writer.ts'
import { caught, countersigned, parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { PeerId } from '@libp2p/interface'

let alice: Party
let bob: Party
let self: PeerId
/** alice's proof of work at the default difficulty: her allowance pays bob, the exit */
let alicePow: bigint
let dir: string
let file: string

beforeAll(async () => {
  [alice, bob] = await parties(2)
  self = peerIdFromPrivateKey(bob.key)
  alicePow = await solvePow(alice.bytes, DEFAULT_POW_DIFFICULTY)
})
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-ledger-ro-'))
  file = join(dir, 'ledger.db')
})
afterEach(async () => { await rm(dir, { recursive: true, force: true, maxRetries: 5 }) })

const digest = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex')

/** A ledger as a node leaves it: bound to `self`, three own sessions, a proof of work, closed. */
async function nodeLedger (bind = true): Promise<void> {
  const ledger = Ledger.open(file, bind ? { selfPeerId: self } : {})
  ledger.recordPow(alice.bytes, alicePow, DEFAULT_POW_DIFFICULTY)
  for (let i = 0; i < 3; i++) await ledger.recordReceipt(await countersigned(alice, bob, { sessionId: `s-${i}`, updatedAt: 1_700_000_005_000n + BigInt(i) }), bind ? 'own' : 'gossip')
  ledger.close()
}

describe('a read-only ledger', () => {
  it('reads what the node wrote, the same as a writable open, and leaves ledger.db as it was', async () => {
    await nodeLedger()
    const writable = Ledger.open(file, { selfPeerId: self })
    const expected = { receipts: writable.receipts(), balance: writable.balance(), size: writable.size }
    writable.close()
    const before = digest(file)
    const ledger = Ledger.open(file, { selfPeerId: self, readOnly: true })
    expect({ receipts: ledger.receipts(), balance: ledger.balance(), size: ledger.size }).toEqual(expected)
    expect(ledger.balance().earnedMicro).toBeGreaterThan(0n)
    ledger.close()
    expect(digest(file)).toBe(before)
  })

  it('does not bind an unbound file to the identity it is opened with', async () => {
    await nodeLedger(false)
    const before = digest(file)
    Ledger.open(file, { selfPeerId: self, readOnly: true }).close()
    expect(digest(file)).toBe(before)
    const db = new DatabaseSync(file, { readOnly: true })
    expect(db.prepare("SELECT value FROM meta WHERE key = 'self'").get()).toBeUndefined()
    db.close()
  })

  it('refuses writes, and the file keeps its contents', async () => {
    await nodeLedger()
    const before = digest(file)
    const ledger = Ledger.open(file, { selfPeerId: self, readOnly: true })
    const err = await caught(async () => ledger.recordReceipt(await countersigned(alice, bob, { sessionId: 'new' }), 'own'))
    expect(err).toMatchObject({ name: 'LedgerError', code: LedgerErrorCode.IO })
    expect(err.message).toContain('readonly')
    expect(ledger.size).toBe(3)
    ledger.close()
    expect(digest(file)).toBe(before)
  })

  it('sees every receipt a killed writer acknowledged, from the WAL it left', async () => {
    // kill while it is writing, without warning
    const { acknowledged, signal } = await writeUntilKilled(file, 20n)
    expect(signal).toBe('SIGKILL')
    expect(existsSync(`${file}-wal`)).toBe(true)
    const ledger = Ledger.open(file, { readOnly: true })
    for (const [id, seq] of acknowledged) expect(ledger.get(id)!.receipt.seq).toBeGreaterThanOrEqual(seq)
    ledger.close()
  })

  it('refuses what a writable open refuses, and creates nothing', async () => {
    const refused = async (code: string, init = {}): Promise<void> => {
      const err = await caught(() => Ledger.open(file, { selfPeerId: self, ...init, readOnly: true }))
      expect(err.name).toBe('LedgerError')
      expect(err.code).toBe(code)
      expect(err.message).toContain(file)
    }
    // absent: an open error, and no file made
    await refused(LedgerErrorCode.IO)
    expect(existsSync(file)).toBe(false)
    // empty (a node that died before it set the file up): nothing to read, nothing written
    await writeFile(file, '')
    await refused(LedgerErrorCode.READ_ONLY)
    expect((await readFile(file)).byteLength).toBe(0)
    await writeFile(file, 'hello, not a database')
    await refused(LedgerErrorCode.NOT_SQLITE)
    await rm(file)
    const foreign = new DatabaseSync(file)
    foreign.exec('CREATE TABLE t (x)')
    foreign.close()
    await refused(LedgerErrorCode.FOREIGN)
    await rm(file)
    await nodeLedger()
    const other = peerIdFromPrivateKey(alice.key)
    await refused(LedgerErrorCode.WRONG_IDENTITY, { selfPeerId: other })
    const good = join(dir, 'good.db')
    await copyFile(file, good)
    await truncate(file, Math.floor(readFileSync(good).byteLength / 2))
    await refused(LedgerErrorCode.CORRUPT)
  })
})

describe('a writable open of a ledger file that cannot be written', () => {
  it('is refused, naming the file and the fix, rather than opened read-only by SQLite for the node\'s whole run', async () => {
    await nodeLedger()
    // root may write any file whatever its mode: an immutable file is one it may not
    const marked = spawnSync('chattr', ['+i', file])
    if (marked.status !== 0) {
      // tmpfs and some container file systems have no such flag: nothing to check here
      console.warn(`ledger-read-only: chattr +i not supported here (${marked.stderr?.toString().trim() ?? marked.error?.message}), test not run`)
      return
    }
    try {
      const err = await caught(() => Ledger.open(file, { selfPeerId: self }))
      expect(err.name).toBe('LedgerError')
      expect(err.code).toBe(LedgerErrorCode.IO)
      expect(err.message).toBe(`ledger ${file} cannot be written (operation not permitted), so no receipt could be stored; make it writable (chattr -i: it is marked immutable) and start again`)
      // read-only opens (the CLI's) still read it
      const ro = Ledger.open(file, { selfPeerId: self, readOnly: true })
      expect(ro.balance(peerIdFromPrivateKey(alice.key)).spentMicro).toBeGreaterThan(0n)
      ro.close()
    } finally {
      spawnSync('chattr', ['-i', file])
    }
    // fixed: it opens and writes again
    const ledger = Ledger.open(file, { selfPeerId: self })
    ledger.close()
  })
})
