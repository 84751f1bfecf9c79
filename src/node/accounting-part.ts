/**
 * Wires accounting into a node: the ledger (opened before libp2p, since the
 * exit meters through it), the exit's receipt sessions, the consumer's
 * sessions, receipt and reputation gossip, the identity proof of work,
 * and the `balance` / `receipts` API.
 */

import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { Ledger } from '../accounting/ledger.ts'
import { ExitSessions, STORE_RETRY_MS } from '../accounting/exit-sessions.ts'
import { ConsumerSessions } from '../accounting/consumer-sessions.ts'
import { ReceiptGossip } from '../accounting/gossip.ts'
import { ReputationBook } from '../accounting/reputation-book.ts'
import { ReputationGossip } from '../accounting/reputation-gossip.ts'
import { REPUTATION_FULL_WEIGHT_MICRO } from '../accounting/constants.ts'
import { solvePowInWorker } from '../accounting/credits.ts'
import { openStream } from './open-stream.ts'
import { StreamedBody } from './control-api.ts'
import { MiB, second } from '../constants.ts'
import { LEDGER_FILE, balanceReport, creditWarning, creditsToMicro, earnAdvice, exportAsJson, ledgerSettings, receiptsReport } from './accounting-report.ts'
import type { BalanceReport } from './accounting-report.ts'
import type { SparebandConfig } from './config.ts'
import type { Identity } from './identity.ts'
import type { NodePart, SparebandNode } from './spareband-node.ts'
import type { RoutingPart } from './routing-part.ts'
import type { GossipSub } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import type { IncomingMessage } from 'node:http'

export { LEDGER_FILE }

/** What exists before libp2p does. */
export interface AccountingCore {
  ledger: Ledger
  exitSessions?: ExitSessions
}

export function openAccounting (config: SparebandConfig, dataDir: string, identity: Identity): AccountingCore | undefined {
  const a = config.accounting
  if (!a.enabled) return undefined
  const ledger = Ledger.open(join(dataDir, LEDGER_FILE), { selfPeerId: identity.peerId, ...ledgerSettings(a) })
  logCompaction(ledger)
  const exitSessions = config.exit.enabled
    ? new ExitSessions({ logger: defaultLogger() }, {
      ledger,
      privateKey: identity.privateKey,
      pricePerGbMicro: creditsToMicro(config.exit.price_per_gb),
      unsignedThreshold: a.unsigned_threshold_mb * MiB,
      creditLimitMicro: creditsToMicro(a.credit_limit),
      powDifficulty: a.pow_difficulty,
      publishIntervalMs: a.publish_interval_seconds * second
    })
    : undefined
  return { ledger, exitSessions }
}

/** What the open did about an old ledger.db's free pages (Ledger.compaction), in the debug log. */
function logCompaction (ledger: Ledger): void {
  const c = ledger.compaction
  if (c == null) return
  const log = defaultLogger().forComponent('spareband:accounting:ledger')
  if (c.outcome === 'converted') log('gave back the free pages of %s and made it auto_vacuum INCREMENTAL: %d bytes before, %d after, in %d ms', ledger.file, c.bytesBefore, c.bytesAfter, Math.round(c.ms))
  else log.error('%s keeps its free pages (%s): %s', ledger.file, c.outcome, c.reason)
}

/** The operator's warning when the open could not give an old ledger.db's free pages back (they are still reused for new rows). */
function compactionWarning (ledger: Ledger): string | undefined {
  const c = ledger.compaction
  if (c == null || c.outcome === 'converted') return undefined
  return `${ledger.file} keeps its free pages: ${c.outcome === 'skipped' ? 'not enough free disk' : 'SQLite could not rewrite it'} at start (${c.reason}). It is as it was and works; the next start tries again`
}

/** `status().accounting`: this node's credit position, and what it took in and sent out on the receipt and reputation topics. */
export interface AccountingStatus extends BalanceReport {
  enabled: true
  /** Receipt gossip: messages accepted, ignored and rejected by the validator, published by this node; peers on the topic. */
  gossip: { accepted: number, ignored: number, ignoredNoProof: number, rejected: number, published: number, subscribers: number }
  /** Reputation gossip, reports held, and what the held reports say of this node as an exit (score null: none counts). */
  reputation: { accepted: number, ignored: number, rejected: number, published: number, held: number, own: { score: number | null, reporters: number } }
}

export interface AccountingPart extends NodePart {
  core: AccountingCore
  consumer: ConsumerSessions
  gossip: ReceiptGossip
  reputation: ReputationGossip
  book: ReputationBook
}

export function accountingPart (node: SparebandNode, core: AccountingCore | undefined): AccountingPart | undefined {
  if (core == null) return undefined
  const { libp2p, config, identity } = node
  const a = config.accounting
  const { ledger, exitSessions } = core
  const onReject = (topic: string) => (from: PeerId, reason: string): void => { node.refusals.note('gossip', from.toString(), reason, topic) }
  const gossip = new ReceiptGossip({ pubsub: libp2p.services.pubsub as GossipSub, topic: config.network.receipts_topic, ledger, logger: libp2p.logger, onReject: onReject(config.network.receipts_topic) })
  exitSessions?.setRefusalListener((consumer, reason) => { node.refusals.note('receipt', consumer.toString(), reason) })
  // a report weighs what its reporter paid the exit, as our ledger sees it (see reputation-book.ts)
  const book = new ReputationBook({
    weightOf: (reporter, subject) => Number(ledger.paidBetween(reporter, subject, REPUTATION_FULL_WEIGHT_MICRO)) / Number(REPUTATION_FULL_WEIGHT_MICRO),
    // held across restarts in ledger.db: a restarted node still knows what the network said of exits
    store: ledger
  })
  const reputation = new ReputationGossip({
    pubsub: libp2p.services.pubsub as GossipSub,
    topic: config.network.reputation_topic,
    book,
    privateKey: identity.privateKey,
    logger: libp2p.logger,
    intervalMs: a.reputation_interval_seconds * second,
    onReject: onReject(config.network.reputation_topic)
  })
  /** What the network says of this node as an exit, from the reports on it we hold. */
  const ownReputation = (): { score: number | null, reporters: number } => {
    const self = identity.peerId.toMultihash().bytes
    return { score: book.score(self) ?? null, reporters: book.reporters(self) }
  }
  let pow = ledger.pow(identity.peerId)
  // one per start: a start that failed (and was stopped) may be tried again
  let powAbort = new AbortController()
  let powDone: () => void = () => {}
  // one per start too: a stopped solve settles it, and a start tried again must wait for its own
  let powSolved = new Promise<void>(resolve => { powDone = resolve })
  /** Our proof of work, once it meets the configured difficulty. */
  const validPow = (): typeof pow => pow != null && pow.difficulty >= a.pow_difficulty ? pow : undefined
  if (validPow() != null) powDone()
  const stopAtMicro = creditsToMicro(a.stop_at_balance)
  const consumer = new ConsumerSessions({
    logger: libp2p.logger,
    dialProtocol: async (peer, protocol, options) => openStream(libp2p, peer, protocol, options)
  }, {
    ledger,
    privateKey: identity.privateKey,
    priceOf: exit => node.part<RoutingPart>('routing')?.discovery.ad(exit)?.pricePerGbMicro,
    intervalBytes: a.receipt_interval_mb * MiB,
    intervalMs: a.receipt_interval_seconds * second,
    pow: validPow,
    powSolved: () => powSolved,
    stopAtBalanceMicro: stopAtMicro,
    // the stop itself may be what to change: a node that exits extend credit to can go below 0
    outOfCreditAdvice: `${earnAdvice(config.exit.enabled)}; a lower accounting.stop_at_balance (SPAREBAND_STOP_AT_BALANCE) goes on into credit that exits extend, where they do`
  })
  // exits publish their countersigned receipts for everyone to see
  exitSessions?.setPublisher(async r => gossip.publish(r))
  const balance = (): BalanceReport => balanceReport(ledger, {
    powDifficulty: a.pow_difficulty,
    pow,
    credit: validPow() != null ? { supplies: config.exit.enabled, stopAtMicro } : undefined,
    pending: { carriedUnsignedBytes: exitSessions?.pendingBytes() ?? 0, usedUnsignedBytes: consumer.pendingBytes(), holds: exitSessions?.holds ?? 0, forgivenBytes: exitSessions?.forgiven ?? 0, receiptsRefused: exitSessions?.receiptsRefused ?? 0 }
  })
  return {
    name: 'accounting',
    core,
    consumer,
    gossip,
    reputation,
    book,
    start: async () => {
      powAbort = new AbortController()
      if (validPow() == null) powSolved = new Promise<void>(resolve => { powDone = resolve })
      await exitSessions?.start(libp2p)
      consumer.start()
      gossip.start()
      reputation.start()
      if (validPow() == null) {
        // solved once per identity, on a worker thread; the allowance (and our tunnels, see prepare()) wait for it
        const bytes = identity.peerId.toMultihash().bytes
        solvePowInWorker(bytes, a.pow_difficulty, { signal: powAbort.signal }).then(nonce => {
          ledger.recordPow(identity.peerId, nonce, a.pow_difficulty)
          pow = { nonce, difficulty: a.pow_difficulty }
          powDone()
        }, () => { powDone() }) // stopped: nobody waits for a proof that will not come
      }
    },
    stop: async () => {
      powAbort.abort()
      await consumer.stop()
      await exitSessions?.stop()
      gossip.stop()
      reputation.stop()
      // the ledger stays open: the node closes it once libp2p (and the exit's metering) has stopped, in its last stop()
    },
    warnings: () => {
      const failure = exitSessions?.storeFailure
      const own = consumer.storeFailure
      const dropped = ledger.pendingDropped
      const w = [
        compactionWarning(ledger),
        dropped != null ? `${ledger.file}.pending ended in ${dropped.droppedBytes} bytes that were no intact receipt at start (a write cut short by a kill, or damage), dropped after the ${dropped.records} intact one(s) before them were written: receipts among them, if any, are still at their exits and in gossip` : undefined,
        validPow() != null ? creditWarning(ledger.balance(), config.exit.enabled, stopAtMicro) : undefined,
        own != null ? `this node's own receipts cannot be stored since ${new Date(own.since).toISOString()}: those its exits countersign are lost if it stops before a write works, and its balance leaves out what they spent; ${own.error}` : undefined,
        failure != null ? `receipts cannot be stored since ${new Date(failure.since).toISOString()}: the exit carries what it has open for nothing, and refuses new tunnels (BUSY) for ${STORE_RETRY_MS / 1000} s after each receipt it could not store (last at ${new Date(failure.at).toISOString()}); this warning ends with the next receipt stored; ${failure.error}` : undefined
      ]
      return w.filter((x): x is string => x != null)
    },
    status: (): AccountingStatus => ({ enabled: true, ...balance(), gossip: { ...gossip.stats, subscribers: gossip.subscribers() }, reputation: { ...reputation.stats, held: book.size, own: ownReputation() } }),
    routes: {
      balance: { get: () => balance() },
      receipts: {
        get: (req: IncomingMessage) => {
          const params = new URL(req.url ?? '/', 'http://localhost').searchParams
          const report = receiptsReport(ledger, { limit: params.get('limit'), peer: params.get('peer'), export: params.get('export') })
          return Array.isArray(report) ? report : new StreamedBody(exportAsJson(report))
        }
      }
    }
  }
}
