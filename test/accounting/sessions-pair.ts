/**
 * An exit's and a consumer's accounting over a real libp2p connection, as
 * the accounting tests set them up: node 0 is the exit, node 1 the
 * consumer, each with its own ledger; the exit's price is the default.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { Ledger } from '../../src/accounting/ledger.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import { ExitSessions } from '../../src/accounting/exit-sessions.ts'
import { DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import type { ExitSessionsInit } from '../../src/accounting/exit-sessions.ts'
import type { Libp2p, PrivateKey } from '@libp2p/interface'

export async function startSessions (keys: PrivateKey[], nodes: Libp2p[], ledgers: Ledger[], exitInit: Partial<ExitSessionsInit> = {}, beforeStart?: (exit: ExitSessions) => void): Promise<{ exit: ExitSessions, consumer: ConsumerSessions }> {
  const exit = new ExitSessions({ logger: defaultLogger() }, { ledger: ledgers[0], privateKey: keys[0], pricePerGbMicro: DEFAULT_PRICE_PER_GB_MICRO, powDifficulty: 0, ...exitInit })
  beforeStart?.(exit)
  await exit.start(nodes[0])
  const consumer = new ConsumerSessions({ logger: defaultLogger(), dialProtocol: async (peer, protocol, options) => nodes[1].dialProtocol(peer, protocol, options) },
    { ledger: ledgers[1], privateKey: keys[1], priceOf: () => DEFAULT_PRICE_PER_GB_MICRO })
  consumer.start()
  await nodes[1].dial(nodes[0].getMultiaddrs()[0])
  return { exit, consumer }
}

/**
 * Two loopback nodes (0 the exit, 1 the consumer) with their keys, and a
 * ledger file each in a new temporary directory `dir`; `stop` stops the
 * nodes, closes the ledgers and removes the directory.
 */
export async function nodesWithLedgers (prefix: string): Promise<{ dir: string, keys: PrivateKey[], nodes: Libp2p[], ledgers: Ledger[], stop: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
  const nodes: Libp2p[] = await Promise.all(keys.map(loopbackNode))
  const ledgers = nodes.map((n, i) => Ledger.open(join(dir, `${i}.db`), { selfPeerId: n.peerId }))
  return {
    dir,
    keys,
    nodes,
    ledgers,
    stop: async () => {
      for (const n of nodes) await n.stop()
      for (const l of ledgers) l.close()
      await rm(dir, { recursive: true, force: true, maxRetries: 5 })
    }
  }
}
