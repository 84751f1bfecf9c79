/**
 * An exit whose disk fills up (and a consumer whose does): a receipt it cannot store is not
 * countersigned (so it vouches for nothing it has no record of), the
 * failure is said (ExitSessions.storeFailure, the node's warning), new
 * tunnels are refused BUSY instead of carried for nothing, and once space
 * is freed the next receipt is stored and new tunnels are taken again. A
 * real tmpfs of 4 MiB, filled by a real file (needs root to mount; skipped
 * otherwise). Real ConsumerSessions and ExitSessions over a real libp2p
 * connection.
 */
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Ledger } from '../../src/accounting/ledger.ts'
import { waitFor } from '../utils/cli.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { startSessions } from './sessions-pair.ts'
import type { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import type { ExitSessions } from '../../src/accounting/exit-sessions.ts'
import type { Libp2p, PrivateKey } from '@libp2p/interface'

const MiB = 1024 * 1024

/** Why a tmpfs cannot be mounted here, or undefined when it can. */
function cannotMount (): string | undefined {
  if (process.getuid?.() !== 0) return 'not root'
  try {
    execFileSync('mount', ['--version'], { stdio: 'ignore' })
  } catch {
    return 'no mount command'
  }
  return undefined
}

/** An exit (node 0) and a consumer (node 1), connected, with `onDisk`'s ledger on a fresh 4 MiB tmpfs and the other's beside it. */
interface Pair {
  disk: string
  nodes: Libp2p[]
  ledgers: Ledger[]
  exit: ExitSessions
  consumer: ConsumerSessions
  /** Carries a MiB down the session at both ends: the consumer signs a receipt for it. */
  carry: (sessionId: string) => void
  close: () => Promise<void>
}

async function pairWithFullableDisk (onDisk: 'exit' | 'consumer'): Promise<Pair> {
  const dir = await mkdtemp(join(tmpdir(), 'sb-full-'))
  const disk = join(dir, 'disk')
  execFileSync('mkdir', [disk])
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', disk])
  const keys: PrivateKey[] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const nodes = await Promise.all(keys.map(loopbackNode))
  const ledgers = [
    Ledger.open(join(onDisk === 'exit' ? disk : dir, 'exit.db'), { selfPeerId: nodes[0].peerId, powDifficulty: 0 }),
    Ledger.open(join(onDisk === 'consumer' ? disk : dir, 'consumer.db'), { selfPeerId: nodes[1].peerId, powDifficulty: 0 })
  ]
  for (const l of ledgers) l.recordPow(nodes[1].peerId, 0n, 0)
  const { exit, consumer } = await startSessions(keys, nodes, ledgers, { creditLimitMicro: 0n })
  return {
    disk,
    nodes,
    ledgers,
    exit,
    consumer,
    carry: sessionId => {
      void exit.meter(nodes[1].peerId, sessionId, 'down', MiB)
      consumer.meter(nodes[0].peerId, 'down', MiB)
    },
    close: async () => {
      await consumer.stop().catch(() => {})
      await exit.stop()
      for (const n of nodes) await n.stop()
      for (const l of ledgers) { try { l.close() } catch {} }
      execFileSync('umount', ['-l', disk])
      await rm(dir, { recursive: true, force: true })
    }
  }
}

describe.skipIf(cannotMount() != null)('an exit whose ledger disk is full (skipped unless root with mount)', () => {
  let t: Pair
  beforeAll(async () => { t = await pairWithFullableDisk('exit') })
  afterAll(async () => { await t?.close() })

  it('stores nothing it cannot, refuses new tunnels meanwhile, and takes them again once a receipt is stored', async () => {
    const { disk, nodes, ledgers, exit, consumer, carry } = t
    const stored = (): bigint => ledgers[0].receipts()[0]?.receipt.bytesDown ?? 0n
    const sessionId = consumer.sessionFor(nodes[0].peerId)
    expect(exit.admit(nodes[1].peerId, sessionId)).toBeUndefined()
    carry(sessionId)
    await waitFor(() => stored() === BigInt(MiB), { what: 'the first receipt stored', intervalMs: 20 })

    // fill what is left of the disk
    const filler = join(disk, 'filler')
    await writeFile(filler, Buffer.alloc(4 * MiB)).catch((err: any) => { expect(err.code).toBe('ENOSPC') })
    carry(sessionId)
    await waitFor(() => exit.storeFailure, { what: 'the exit to find it cannot store a receipt', intervalMs: 20 })
    expect(exit.storeFailure!.error).toMatch(/^cannot write to ledger .*exit\.db: the disk is full \(.*\); free some space on it$/)
    // not countersigned, not stored: the ledger still holds the first receipt
    expect(stored()).toBe(BigInt(MiB))
    const refusal = exit.admit(nodes[1].peerId, sessionId)
    expect(refusal?.status).toBe('BUSY')
    expect(refusal?.message).toMatch(/^this exit cannot store receipts now \(cannot write to ledger .*the disk is full/)

    // space again: the consumer signs the bytes again with the next MiB, and the exit stores them
    await rm(filler)
    carry(sessionId)
    await waitFor(() => stored() === BigInt(3 * MiB), { timeoutMs: 15_000, what: 'all three MiB stored once there is room', intervalMs: 20 })
    expect(exit.storeFailure).toBeUndefined()
    expect(exit.admit(nodes[1].peerId, sessionId)).toBeUndefined()
  })
})

describe.skipIf(cannotMount() != null)('a consumer whose ledger disk is full (skipped unless root with mount)', () => {
  let t: Pair
  beforeAll(async () => { t = await pairWithFullableDisk('consumer') })
  afterAll(async () => { await t?.close() })

  it('says its receipts cannot be written, and stops saying so once one is', async () => {
    const { disk, nodes, ledgers, exit, consumer } = t
    const sessionId = consumer.sessionFor(nodes[0].peerId)
    const carry = (): void => { t.carry(sessionId) }
    expect(exit.admit(nodes[1].peerId, sessionId)).toBeUndefined()
    carry()
    await waitFor(() => ledgers[1].receipts()[0]?.receipt.bytesDown === BigInt(MiB), { what: 'the first receipt in the consumer\'s ledger', intervalMs: 20 })
    const filler = join(disk, 'filler')
    await writeFile(filler, Buffer.alloc(4 * MiB)).catch((err: any) => { expect(err.code).toBe('ENOSPC') })
    carry()
    await waitFor(() => consumer.storeFailure, { what: 'the consumer to find it cannot write a receipt', intervalMs: 20 })
    expect(consumer.storeFailure!.error).toMatch(/^cannot write to ledger .*consumer\.db: the disk is full/)
    // the exit stored it: only the consumer's copy is missing
    await waitFor(() => ledgers[0].receipts()[0]?.receipt.bytesDown === BigInt(2 * MiB), { what: 'the exit storing the second receipt', intervalMs: 20 })
    await rm(filler)
    carry()
    await waitFor(() => consumer.storeFailure == null, { timeoutMs: 15_000, what: 'a receipt written again', intervalMs: 20 })
    await waitFor(() => ledgers[1].receipts()[0]?.receipt.bytesDown === BigInt(3 * MiB), { what: 'the third receipt in the consumer\'s ledger', intervalMs: 20 })
  })
})
