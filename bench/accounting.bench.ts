/**
 * Accounting benchmark: how many receipts a node can sign, countersign and
 * verify per second, how fast the SQLite ledger records them (including
 * signature checks, as gossip arrives), and what the identity proof of work
 * costs. These bound the receipt rate per tunnel and the gossip volume a
 * node can absorb.
 *
 *   npm run build && node dist/bench/accounting.bench.js
 *   npx node --experimental-transform-types bench/accounting.bench.ts   (protons output uses namespaces, which plain type stripping cannot run)
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { solvePow } from '../src/accounting/credits.ts'
import { Ledger } from '../src/accounting/ledger.ts'
import { countersign, signAsConsumer, verifyReceipt } from '../src/accounting/receipts.ts'
import type { CountersignedReceipt, Receipt } from '../src/accounting/receipts.ts'

export interface AccountingBenchOptions {
  /** Receipts to sign, countersign and verify. @default 2000 */
  receipts?: number
  /** Receipts to record in the ledger. @default 5000 */
  inserts?: number
  /** Proof-of-work difficulty to time. @default 16 */
  powBits?: number
  /** Proofs to average over (one solve varies a lot). @default 8 */
  powRuns?: number
}

interface Row { metric: string, value: number, unit: string }

function receiptBody (consumer: Uint8Array, exit: Uint8Array, i: number): Receipt {
  return {
    sessionId: `bench-${i}`,
    consumer,
    exit,
    bytesUp: BigInt(i * 1_000),
    bytesDown: BigInt(i * 1_000_000),
    seq: 1n,
    startedAt: 1_700_000_000_000n,
    updatedAt: 1_700_000_005_000n,
    pricePerGb: 1_000_000n
  }
}

async function makeReceipts (n: number): Promise<{ receipts: CountersignedReceipt[], seconds: number }> {
  const consumerKey = await generateKeyPair('Ed25519')
  const exitKey = await generateKeyPair('Ed25519')
  const consumer = peerIdFromPrivateKey(consumerKey).toMultihash().bytes
  const exit = peerIdFromPrivateKey(exitKey).toMultihash().bytes
  const receipts: CountersignedReceipt[] = []
  const start = performance.now()
  for (let i = 0; i < n; i++) {
    const signed = await signAsConsumer(receiptBody(consumer, exit, i), consumerKey)
    const full = await countersign(signed, exitKey)
    await verifyReceipt(full)
    receipts.push(full)
  }
  return { receipts, seconds: (performance.now() - start) / 1000 }
}

async function benchLedger (receipts: CountersignedReceipt[]): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'spareband-bench-'))
  try {
    const ledger = Ledger.open(join(dir, 'ledger.db'))
    let start = performance.now()
    for (const r of receipts) await ledger.recordReceipt(r, 'gossip')
    const insert = (performance.now() - start) / 1000
    start = performance.now()
    for (const r of receipts) await ledger.recordReceipt(r, 'gossip')
    const duplicate = (performance.now() - start) / 1000
    ledger.close()
    return [
      { metric: 'ledger-inserts', value: receipts.length / insert, unit: 'receipts/s (verified, one commit each)' },
      { metric: 'ledger-duplicates', value: receipts.length / duplicate, unit: 'receipts/s (gossip repeats, no verification)' }
    ]
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function benchPow (bits: number, runs: number): Promise<Row[]> {
  let hashes = 0n
  const start = performance.now()
  for (let i = 0; i < runs; i++) {
    const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toMultihash().bytes
    // the nonce found is the number of hashes tried, minus one
    hashes += await solvePow(peer, bits) + 1n
  }
  const seconds = (performance.now() - start) / 1000
  const rate = Number(hashes) / seconds
  return [
    { metric: `pow-${bits}-bits`, value: seconds * 1000 / runs, unit: `ms (mean of ${runs})` },
    { metric: 'pow-hash-rate', value: rate, unit: 'hashes/s' },
    { metric: 'pow-20-bits-expected', value: 2 ** 20 / rate * 1000, unit: 'ms (2^20 hashes at that rate)' }
  ]
}

function print (rows: Row[]): void {
  const width = Math.max(...rows.map(r => r.metric.length))
  const values = rows.map(r => r.value >= 100 ? Math.round(r.value).toLocaleString('en-US') : r.value.toFixed(2))
  const valueWidth = Math.max(...values.map(v => v.length))
  rows.forEach((r, i) => {
    console.log(`accounting  ${r.metric.padEnd(width)}  ${values[i].padStart(valueWidth)} ${r.unit}`)
  })
}

export async function main (options: AccountingBenchOptions = {}): Promise<Row[]> {
  const { receipts, seconds } = await makeReceipts(options.receipts ?? 2_000)
  const rows: Row[] = [{ metric: 'receipts-sign-countersign-verify', value: receipts.length / seconds, unit: 'receipts/s' }]
  rows.push(...await benchLedger(await extend(receipts, options.inserts ?? 5_000)))
  rows.push(...await benchPow(options.powBits ?? 16, options.powRuns ?? 8))
  print(rows)
  return rows
}

/** Reuses the signed receipts and signs only the missing ones (with new keys, so no session key repeats). */
async function extend (receipts: CountersignedReceipt[], n: number): Promise<CountersignedReceipt[]> {
  if (receipts.length >= n) return receipts.slice(0, n)
  const more = await makeReceipts(n - receipts.length)
  return [...receipts, ...more.receipts]
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
