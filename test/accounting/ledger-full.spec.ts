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
import { defaultLogger } from '@libp2p/logger'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import { ExitSessions } from '../../src/accounting/exit-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import { waitFor } from '../utils/cli.ts'
import { loopbackNode } from '../utils/libp2p.ts'
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

describe.skipIf(cannotMount() != null)('an exit whose ledger disk is full (skipped unless root with mount)', () => {
  let dir: string
  let disk: string
  let mounted = false
  let nodes: Libp2p[]
  let ledgers: Ledger[]
  let exit: ExitSessions
  let consumer: ConsumerSessions

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-full-'))
    disk = join(dir, 'disk')
    execFileSync('mkdir', [disk])
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', disk])
    mounted = true
    const keys: PrivateKey[] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    nodes = await Promise.all(keys.map(loopbackNode))
    ledgers = [
      Ledger.open(join(disk, 'exit.db'), { selfPeerId: nodes[0].peerId, powDifficulty: 0 }),
      Ledger.open(join(dir, 'consumer.db'), { selfPeerId: nodes[1].peerId, powDifficulty: 0 })
    ]
    for (const l of ledgers) l.recordPow(nodes[1].peerId, 0n, 0)
    exit = new ExitSessions({ logger: defaultLogger() }, { ledger: ledgers[0], privateKey: keys[0], pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, creditLimitMicro: 0n, powDifficulty: 0 })
    await exit.start(nodes[0])
    consumer = new ConsumerSessions({ logger: defaultLogger(), dialProtocol: async (peer, protocol, options) => nodes[1].dialProtocol(peer, protocol, options) },
      { ledger: ledgers[1], privateKey: keys[1], priceOf: () => DEFAULT_PRICE_PER_GB_MICRO })
    consumer.start()
    await nodes[1].dial(nodes[0].getMultiaddrs()[0])
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    for (const n of nodes ?? []) await n.stop()
    for (const l of ledgers ?? []) l.close()
    if (mounted) execFileSync('umount', ['-l', disk])
    await rm(dir, { recursive: true, force: true })
  })

  const stored = (): bigint => ledgers[0].receipts()[0]?.receipt.bytesDown ?? 0n
  const carry = (sessionId: string): void => {
    void exit.meter(nodes[1].peerId, sessionId, 'down', MiB)
    consumer.meter(nodes[0].peerId, 'down', MiB)
  }

  it('stores nothing it cannot, refuses new tunnels meanwhile, and takes them again once a receipt is stored', async () => {
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
  let dir: string
  let disk: string
  let mounted = false
  let nodes: Libp2p[]
  let ledgers: Ledger[]
  let exit: ExitSessions
  let consumer: ConsumerSessions

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-full-'))
    disk = join(dir, 'disk')
    execFileSync('mkdir', [disk])
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', disk])
    mounted = true
    const keys: PrivateKey[] = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    nodes = await Promise.all(keys.map(loopbackNode))
    ledgers = [
      Ledger.open(join(dir, 'exit.db'), { selfPeerId: nodes[0].peerId, powDifficulty: 0 }),
      Ledger.open(join(disk, 'consumer.db'), { selfPeerId: nodes[1].peerId, powDifficulty: 0 })
    ]
    for (const l of ledgers) l.recordPow(nodes[1].peerId, 0n, 0)
    exit = new ExitSessions({ logger: defaultLogger() }, { ledger: ledgers[0], privateKey: keys[0], pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, creditLimitMicro: 0n, powDifficulty: 0 })
    await exit.start(nodes[0])
    consumer = new ConsumerSessions({ logger: defaultLogger(), dialProtocol: async (peer, protocol, options) => nodes[1].dialProtocol(peer, protocol, options) },
      { ledger: ledgers[1], privateKey: keys[1], priceOf: () => DEFAULT_PRICE_PER_GB_MICRO })
    consumer.start()
    await nodes[1].dial(nodes[0].getMultiaddrs()[0])
  })
  afterAll(async () => {
    await consumer?.stop().catch(() => {})
    await exit?.stop()
    for (const n of nodes ?? []) await n.stop()
    for (const l of ledgers ?? []) { try { l.close() } catch {} }
    if (mounted) execFileSync('umount', ['-l', disk])
    await rm(dir, { recursive: true, force: true })
  })

  it('says its receipts cannot be written, and stops saying so once one is', async () => {
    const sessionId = consumer.sessionFor(nodes[0].peerId)
    expect(exit.admit(nodes[1].peerId, sessionId)).toBeUndefined()
    const carry = (): void => {
      void exit.meter(nodes[1].peerId, sessionId, 'down', MiB)
      consumer.meter(nodes[0].peerId, 'down', MiB)
    }
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

