/**
 * Many countersigned receipts, made fast, for the tests (and measurements)
 * of exports at scale: the receipts are signed with node:crypto keys built
 * once per party, not through countersign(), which also verifies the
 * consumer's signature and so costs half as much again.
 *
 * Run directly to write an export file:
 * `node --experimental-transform-types test/accounting/big-export.ts FILE csv|json COUNT [SESSIONS]`,
 * or `... DATA_DIR ledger COUNT` for a data directory whose ledger holds them.
 */

import { createPrivateKey, sign } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { finished } from 'node:stream/promises'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { join } from 'node:path'
import { ExportWriter } from '../../src/accounting/export.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { createIdentity } from '../../src/node/identity.ts'
import { receiptSigningBytes } from '../../src/accounting/receipts.ts'
import { parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import type { ExportFormat } from '../../src/accounting/export.ts'
import type { CountersignedReceipt, ReceiptBody } from '../../src/accounting/receipts.ts'
import type { KeyObject } from 'node:crypto'

const keys = new WeakMap<Party, KeyObject>()

function keyOf (p: Party): KeyObject {
  let key = keys.get(p)
  if (key == null) {
    const raw = p.key.raw
    key = createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: uint8ArrayToString(raw.subarray(0, 32), 'base64url'), x: uint8ArrayToString(p.key.publicKey.raw, 'base64url') } })
    keys.set(p, key)
  }
  return key
}

/** A receipt signed by both parties (consumer first), with no checks. */
export function quickCountersigned (consumer: Party, exit: Party, body: Omit<ReceiptBody, 'consumer' | 'exit'>): CountersignedReceipt {
  const r = { ...body, consumer: consumer.bytes, exit: exit.bytes }
  const data = receiptSigningBytes(r)
  return { ...r, consumerSig: new Uint8Array(sign(null, data, keyOf(consumer))), exitSig: new Uint8Array(sign(null, data, keyOf(exit))) }
}

/**
 * `count` receipts over `sessions` sessions (default: one receipt each, as
 * a ledger exports them), between 4 parties; a session's receipts come in
 * seq order, the sessions interleaved.
 */
export async function * manyReceipts (count: number, sessions = count, exit?: Party): AsyncGenerator<CountersignedReceipt> {
  const ps = await parties(4)
  for (let i = 0; i < count; i++) {
    const session = i % sessions
    const seq = BigInt(Math.floor(i / sessions) + 1)
    const consumer = ps[session % 4]
    // with `exit` given, it is every receipt's exit (a node's own ledger)
    const exitParty = exit ?? ps[(session + 1) % 4]
    yield quickCountersigned(consumer, exitParty, {
      sessionId: `session-${session}`,
      bytesUp: 1_000n * seq + BigInt(session),
      bytesDown: 1_000_000n * seq,
      seq,
      startedAt: 1_700_000_000_000n,
      updatedAt: 1_700_000_000_000n + seq,
      pricePerGb: 1_000_000n
    })
  }
}

/** Writes an export of manyReceipts(count, sessions) to `file`, a batch at a time. */
export async function writeBigExport (file: string, format: ExportFormat, count: number, sessions = count): Promise<void> {
  const out = createWriteStream(file)
  const writer = new ExportWriter(format)
  let text = writer.start()
  for await (const r of manyReceipts(count, sessions)) {
    text += writer.add(r)
    if (text.length > 65_536) {
      if (!out.write(text)) await once(out, 'drain')
      text = ''
    }
  }
  out.end(text + writer.end())
  await finished(out)
}

/**
 * A data directory with an identity and a ledger.db holding `count`
 * sessions in which this node was the exit, written straight to the ledger
 * (its signatures made here, so not checked again).
 */
export async function dataDirWithBigLedger (dataDir: string, count: number): Promise<void> {
  const identity = await createIdentity(dataDir)
  const self: Party = { key: identity.privateKey, bytes: identity.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, id: identity.peerId.toString() }
  const ledger = Ledger.open(join(dataDir, 'ledger.db'), { selfPeerId: identity.peerId, powDifficulty: 8 })
  try {
    for await (const r of manyReceipts(count, count, self)) await ledger.recordReceipt(r, 'own', { verified: true })
  } finally {
    ledger.close()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [file, format, count, sessions] = process.argv.slice(2)
  if (format === 'ledger') await dataDirWithBigLedger(file, Number(count))
  else await writeBigExport(file, format as ExportFormat, Number(count), sessions == null ? undefined : Number(sessions))
}
