/**
 * Receipts queued for the ledger's next batch, on disk until the batch is
 * committed: `ledger.db.pending` beside the ledger.
 *
 * Why: the consumer writes its countersigned receipts in batches (one
 * SQLite commit per 100 ms, not one per MiB carried), and a node killed
 * between two batches lost the receipts queued since the last one. An
 * append to this file is one write() per receipt, and write() has put the
 * bytes in the kernel before it returns, so a killed process loses nothing
 * (a power cut is another matter: neither is this file fsynced, nor are
 * SQLite's commits at synchronous=NORMAL). The ledger empties the file
 * after each committed batch and replays it when it opens.
 *
 * Each record: 4-byte big-endian length, the first 4 bytes of the
 * record's SHA-256, the encoded receipt. A record cut short or damaged
 * (the process died mid-write) ends the replay: everything after it was
 * written later.
 */

import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs'
import { hash } from 'node:crypto'

const HEADER = 8

function checksum (bytes: Uint8Array): Buffer {
  return hash('sha256', bytes, 'buffer').subarray(0, 4)
}

export class PendingJournal {
  private fd?: number

  private constructor (readonly file: string) {
    // append mode: every write lands at the end, also after the file was emptied
    this.fd = openSync(file, 'a', 0o600)
  }

  /**
   * Opens (creating) the journal and returns it with the receipts it holds,
   * oldest first, and how many bytes after them were no intact record.
   */
  static open (file: string): { journal: PendingJournal, pending: Uint8Array[], droppedBytes: number } {
    const journal = new PendingJournal(file)
    const { records, droppedBytes } = PendingJournal.scan(file)
    return { journal, pending: records, droppedBytes }
  }

  /** The intact records of `file`, up to the first that is not. */
  static read (file: string): Uint8Array[] {
    return PendingJournal.scan(file).records
  }

  /** The intact records, and the bytes from the first that is not to the end (a write cut short, or damage). */
  private static scan (file: string): { records: Uint8Array[], droppedBytes: number } {
    let bytes: Buffer
    try {
      bytes = readFileSync(file)
    } catch (err: any) {
      if (err.code === 'ENOENT') return { records: [], droppedBytes: 0 }
      throw err
    }
    const records: Uint8Array[] = []
    let at = 0
    while (at + HEADER <= bytes.byteLength) {
      const length = bytes.readUInt32BE(at)
      const end = at + HEADER + length
      if (end > bytes.byteLength) break
      const record = bytes.subarray(at + HEADER, end)
      if (!checksum(record).equals(bytes.subarray(at + 4, at + HEADER))) break
      records.push(Uint8Array.from(record))
      at = end
    }
    return { records, droppedBytes: bytes.byteLength - at }
  }

  append (encoded: Uint8Array): void {
    const record = Buffer.allocUnsafe(HEADER + encoded.byteLength)
    record.writeUInt32BE(encoded.byteLength, 0)
    checksum(encoded).copy(record, 4)
    record.set(encoded, HEADER)
    writeSync(this.openFd(), record)
  }

  /** Everything in it is committed to the ledger. */
  clear (): void {
    ftruncateSync(this.openFd(), 0)
  }

  close (): void {
    if (this.fd == null) return
    closeSync(this.fd)
    this.fd = undefined
  }

  private openFd (): number {
    if (this.fd == null) throw new Error(`pending-receipt journal ${this.file} is closed`)
    return this.fd
  }
}
