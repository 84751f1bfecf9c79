import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PendingJournal } from '../../src/accounting/pending-journal.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { encodeReceipt, receiptId } from '../../src/accounting/receipts.ts'
import { countersigned, parties } from './fixtures.ts'
import { writeUntilKilled } from './killed-writer.ts'

let dir: string
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'sb-pending-')) })
afterEach(() => { rmSync(dir, { recursive: true, force: true, maxRetries: 5 }) })

describe('PendingJournal', () => {
  it('reads back what was appended, nothing once cleared, and stops at a record cut short', () => {
    const file = join(dir, 'j')
    const { journal, pending } = PendingJournal.open(file)
    expect(pending).toEqual([])
    const records = [Uint8Array.from([1, 2, 3]), new Uint8Array(300).fill(7), Uint8Array.from([9])]
    for (const r of records) journal.append(r)
    expect(PendingJournal.read(file)).toEqual(records)
    journal.clear()
    expect(PendingJournal.read(file)).toEqual([])
    journal.append(records[1])
    expect(PendingJournal.read(file)).toEqual([records[1]])
    journal.close()
    // a write the process did not finish: the intact records before it stand
    const whole = readFileSync(file)
    writeFileSync(file, Buffer.concat([whole, whole.subarray(0, whole.byteLength - 5)]))
    expect(PendingJournal.read(file)).toEqual([records[1]])
    // a damaged record ends the replay too
    const damaged = Buffer.concat([whole, whole])
    damaged[whole.byteLength + 20] ^= 1
    writeFileSync(file, damaged)
    expect(PendingJournal.read(file)).toEqual([records[1]])
  })
})

describe('ledger with a pending-receipt journal', () => {
  it('loses no receipt handed to recordLater() when the process is killed before its batch', async () => {
    const file = join(dir, 'ledger.db')
    // kill while it is writing, without warning
    const { acknowledged, signal } = await writeUntilKilled(file, 30n, 'deferred-writer.ts')
    expect(signal).toBe('SIGKILL')
    expect(acknowledged.size).toBe(3)
    const ledger = Ledger.open(file)
    for (const [id, seq] of acknowledged) expect(ledger.get(id)!.receipt.seq).toBeGreaterThanOrEqual(seq)
    await ledger.close()
    // written, so the journal is empty again
    expect(statSync(`${file}.pending`).size).toBe(0)
  })

  it('replays the journal once, checks what it replays, and empties it', async () => {
    const [alice, bob] = await parties(2)
    const file = join(dir, 'ledger.db')
    Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key) }).close()
    const good = await countersigned(alice, bob, { sessionId: 'kept', seq: 3n })
    const forged = encodeReceipt({ ...(await countersigned(alice, bob, { sessionId: 'forged' })), exitSig: new Uint8Array(64) })
    // as a killed process would leave it
    const journal = PendingJournal.open(`${file}.pending`).journal
    journal.append(encodeReceipt(good))
    journal.append(forged)
    journal.close()
    appendFileSync(`${file}.pending`, Buffer.from([0, 0, 1]))
    const ledger = Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key) })
    // the 3 bytes that are no record are dropped, and the open says so (a status warning)
    expect(ledger.pendingDropped).toEqual({ records: 2, droppedBytes: 3 })
    expect(ledger.get(receiptId(good))!.receipt.seq).toBe(3n)
    expect(ledger.receipts().map(r => r.receipt.sessionId)).toEqual(['kept'])
    expect(statSync(`${file}.pending`).size).toBe(0)
    await ledger.close()
  })

  it('keeps no journal for a ledger in memory, and leaves none for one opened read-only', async () => {
    Ledger.open(':memory:').close()
    expect(existsSync(':memory:.pending')).toBe(false)
    const file = join(dir, 'ledger.db')
    const clean = Ledger.open(file)
    // a journal that ends where its last record does is nothing to report
    expect(clean.pendingDropped).toBeUndefined()
    clean.close()
    rmSync(`${file}.pending`)
    Ledger.open(file, { readOnly: true }).close()
    expect(existsSync(`${file}.pending`)).toBe(false)
  })
})

describe('a batch whose commit failed', () => {
  it('is written with the next batch, and stays in the journal until it is', async () => {
    const [alice, bob] = await parties(2)
    const file = join(dir, 'ledger.db')
    const ledger = Ledger.open(file, { selfPeerId: peerIdFromPrivateKey(alice.key) })
    const first = await countersigned(alice, bob, { sessionId: 'first', seq: 1n })
    const second = await countersigned(alice, bob, { sessionId: 'second', seq: 1n })
    // another connection holds the write lock past the busy timeout: the batch fails (SQLITE_BUSY)
    const other = new DatabaseSync(file)
    other.exec('BEGIN IMMEDIATE')
    const failed = ledger.recordLater(first)
    ledger.flush()
    expect((await failed.catch(err => err)).name).toBe('LedgerError')
    other.exec('ROLLBACK')
    await other.close()
    expect(PendingJournal.read(`${file}.pending`)).toHaveLength(1)
    const next = ledger.recordLater(second)
    ledger.flush()
    expect(await next).toBe('inserted')
    expect(ledger.get(receiptId(first))?.receipt.seq).toBe(1n)
    expect(ledger.get(receiptId(second))?.receipt.seq).toBe(1n)
    expect(PendingJournal.read(`${file}.pending`)).toHaveLength(0)
    await ledger.close()
  }, 20_000)
})
