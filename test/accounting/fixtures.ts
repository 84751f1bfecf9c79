/**
 * Keys and receipts for the accounting tests. Ed25519 keys are generated
 * once per file because signing is what costs time in these tests.
 */

import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { countersign, signAsConsumer } from '../../src/accounting/receipts.ts'
import type { CountersignedReceipt, Receipt, SignedReceipt } from '../../src/accounting/receipts.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface Party {
  key: PrivateKey
  /** peerId.toMultihash().bytes, what receipts carry. */
  bytes: Uint8Array<ArrayBuffer>
  id: string
}

export async function party (): Promise<Party> {
  const key = await generateKeyPair('Ed25519')
  const peer = peerIdFromPrivateKey(key)
  return { key, bytes: peer.toMultihash().bytes as Uint8Array<ArrayBuffer>, id: peer.toString() }
}

export async function parties (n: number): Promise<Party[]> {
  return Promise.all(Array.from({ length: n }, async () => party()))
}

/** An unsigned receipt body with sensible values; override any field. */
export function body (consumer: Party, exit: Party, overrides: Partial<Receipt> = {}): Receipt {
  return {
    sessionId: 'session-1',
    consumer: consumer.bytes,
    exit: exit.bytes,
    bytesUp: 1_000n,
    bytesDown: 50_000n,
    seq: 1n,
    startedAt: 1_700_000_000_000n,
    updatedAt: 1_700_000_005_000n,
    pricePerGb: 1_000_000n,
    ...overrides
  }
}

export async function signed (consumer: Party, exit: Party, overrides: Partial<Receipt> = {}): Promise<SignedReceipt> {
  return signAsConsumer(body(consumer, exit, overrides), consumer.key)
}

export async function countersigned (consumer: Party, exit: Party, overrides: Partial<Receipt> = {}): Promise<CountersignedReceipt> {
  return countersign(await signed(consumer, exit, overrides), exit.key)
}

/** The error a promise rejects with (or a sync function throws), for asserting on name and code. */
export async function caught (fn: () => unknown): Promise<any> {
  try {
    await fn()
  } catch (err) {
    return err
  }
  throw new Error('expected an error')
}
