/**
 * A stopped node's accounting, for `spareband balance` and `spareband
 * receipts` when no node runs on the data directory: its ledger.db opened
 * read-only, with the identity and `[accounting]` settings the node opens
 * it with, answering what the node's API would (balanceReport,
 * receiptsReport) but for what only a running node knows: `pending` is
 * null, unknown rather than zero.
 */

import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { Ledger } from '../accounting/ledger.ts'
import { PendingJournal } from '../accounting/pending-journal.ts'
import { loadIdentity } from './identity.ts'
import { LEDGER_FILE, balanceReport, creditsToMicro, ledgerSettings, receiptsReport } from './accounting-report.ts'
import type { BalanceReport, ReceiptsQuery } from './accounting-report.ts'
import type { SparebandConfig } from './config.ts'

export interface OfflineAccounting {
  /** The ledger file read. */
  file: string
  /**
   * Countersigned receipts in `ledger.db.pending`, which the node queued
   * and was killed before it wrote (pending-journal.ts): not in the ledger,
   * so left out of balance and receipts here, until the node's next start
   * writes them. Read-only, they cannot be written now.
   */
  pendingReceipts: number
  balance: () => BalanceReport
  receipts: (query: ReceiptsQuery) => ReturnType<typeof receiptsReport>
  close: () => void
}

/**
 * Opens the data directory's ledger read-only: undefined when it has none.
 * Throws IdentityMissingError without identity.key, and LedgerError for a
 * file that is not a healthy ledger of this identity (as the node would).
 */
export async function openOfflineAccounting (dataDir: string, config: SparebandConfig): Promise<OfflineAccounting | undefined> {
  const file = join(dataDir, LEDGER_FILE)
  if (!existsSync(file)) return undefined
  const identity = await loadIdentity(dataDir)
  const a = config.accounting
  const ledger = Ledger.open(file, { selfPeerId: identity.peerId, ...ledgerSettings(a), readOnly: true })
  let pendingReceipts = 0
  try {
    pendingReceipts = PendingJournal.read(`${file}.pending`).length
  } catch {}
  return {
    file,
    pendingReceipts,
    balance: () => {
      const pow = ledger.pow(identity.peerId)
      // the allowance counts once the proof of work meets the configured difficulty, as in a running node
      const credit = pow != null && pow.difficulty >= a.pow_difficulty ? { supplies: config.exit.enabled, stopAtMicro: creditsToMicro(a.stop_at_balance) } : undefined
      return balanceReport(ledger, { powDifficulty: a.pow_difficulty, pow, pending: null, credit })
    },
    receipts: query => receiptsReport(ledger, query),
    close: () => { ledger.close() }
  }
}
