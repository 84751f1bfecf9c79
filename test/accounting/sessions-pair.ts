/**
 * An exit's and a consumer's accounting over a real libp2p connection, as
 * the accounting tests set them up: node 0 is the exit, node 1 the
 * consumer, each with its own ledger; the exit's price is the default.
 */
import { defaultLogger } from '@libp2p/logger'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import { ExitSessions } from '../../src/accounting/exit-sessions.ts'
import { DEFAULT_PRICE_PER_GB_MICRO } from '../../src/accounting/constants.ts'
import type { ExitSessionsInit } from '../../src/accounting/exit-sessions.ts'
import type { Ledger } from '../../src/accounting/ledger.ts'
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
