/**
 * @packageDocumentation
 *
 * Accounting: usage receipts signed by consumer and exit, the SQLite ledger
 * that keeps the newest receipt per session and derives balances, credit
 * arithmetic, the identity proof of work that gates the starting allowance,
 * and receipt exports that anyone can verify offline.
 *
 * This is the pure core; the tunnel integration (metering, the
 * `/spareband/receipt/1.0.0` stream, gossip) builds on it.
 *
 * @example
 *
 * ```TypeScript
 * const ledger = Ledger.open(join(dataDir, 'ledger.db'), { selfPeerId })
 * const signed = await signAsConsumer({ sessionId, consumer, exit, bytesUp, bytesDown, seq, startedAt, updatedAt, pricePerGb }, consumerKey)
 * const full = await countersign(signed, exitKey)          // at the exit
 * await ledger.recordReceipt(full, 'own')                   // 'inserted' | 'updated' | 'duplicate'
 * ledger.balance().balanceMicro                             // allowance + earned - spent
 * ```
 */

export * from './constants.ts'
export { ReceiptError, ReceiptErrorCode, LedgerError, LedgerErrorCode, ReputationError, ReputationErrorCode } from './errors.ts'
export type { ReceiptErrorType } from './errors.ts'
export {
  ReceiptTracker, checkProgress, checkReceiptFields, countersign, decodeReceipt, ed25519PeerFromBytes, encodeReceipt,
  encodeReceiptProtobuf, receiptId, receiptSigningBytes, signAsConsumer, verifyReceipt
} from './receipts.ts'
export type {
  CountersignedReceipt, Progress, Receipt, ReceiptBody, ReceiptParties, ReceiptTrackerInit, SignedReceipt, VerifyReceiptOptions
} from './receipts.ts'
export { costMicro, formatCredits, leadingZeroBits, parseCredits, powDigest, solvePow, solvePowInWorker, verifyPow } from './credits.ts'
export type { SolvePowOptions } from './credits.ts'
export { LEDGER_APP, LEDGER_SCHEMA_VERSION, Ledger } from './ledger.ts'
export type { Balance, LedgerInit, ReceiptQuery, ReceiptSource, RecordResult, StoredReceipt } from './ledger.ts'
export { EXPORT_VERSION, exportReceipts, verifyExport } from './export.ts'
export type { ExportFormat, ExportTotals, VerifyExportResult } from './export.ts'
export { checkReportFields, decodeReport, encodeReport, reportSigningBytes, signReport, verifyReport } from './reputation.ts'
export type { ReportBody, ReputationReport, SignedReport } from './reputation.ts'
export { ReputationBook } from './reputation-book.ts'
export type { Consideration, ReputationBookInit } from './reputation-book.ts'
