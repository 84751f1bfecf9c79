/**
 * Errors of the accounting area. Callers and tests match on `name` and
 * `code`, never on the message; the metadata (`meta`) is there to be logged.
 * Codes are `as const` objects rather than TypeScript enums so the files run
 * under Node's type stripping.
 */

export const ReceiptErrorCode = {
  /** A field is missing or out of range, or the bytes do not decode. */
  MALFORMED: 'RECEIPT_ERROR_MALFORMED',
  /** The encoding exceeds MAX_RECEIPT_BYTES. */
  TOO_LARGE: 'RECEIPT_ERROR_TOO_LARGE',
  /** consumer or exit is not the peer id of an Ed25519 key. */
  UNSUPPORTED_KEY: 'RECEIPT_ERROR_UNSUPPORTED_KEY',
  BAD_CONSUMER_SIGNATURE: 'RECEIPT_ERROR_BAD_CONSUMER_SIGNATURE',
  BAD_EXIT_SIGNATURE: 'RECEIPT_ERROR_BAD_EXIT_SIGNATURE',
  /** The key used (or the peer asked to accept it) is not a party of the receipt, or consumer = exit. */
  WRONG_PEER: 'RECEIPT_ERROR_WRONG_PEER',
  /** Lower seq, counters or updated_at than the receipt already held for the session. */
  REGRESSED: 'RECEIPT_ERROR_REGRESSED',
  /** Already seen, or taken from another session that reused the session id. */
  REPLAY: 'RECEIPT_ERROR_REPLAY',
  /** Same seq as the held receipt but other contents: the consumer signed two versions. */
  CONFLICT: 'RECEIPT_ERROR_CONFLICT',
  /** Gossip of a third party's session this ledger does not hold and may have pruned (Ledger.pruneGossip). */
  EXPIRED: 'RECEIPT_ERROR_EXPIRED'
} as const

export type ReceiptErrorCode = typeof ReceiptErrorCode[keyof typeof ReceiptErrorCode]

/** Metadata that can be logged with each code. */
export type ReceiptErrorType =
  | { code: typeof ReceiptErrorCode.MALFORMED, reason: string }
  | { code: typeof ReceiptErrorCode.TOO_LARGE, size: number, max: number }
  | { code: typeof ReceiptErrorCode.UNSUPPORTED_KEY, field: 'consumer' | 'exit', reason: string }
  | { code: typeof ReceiptErrorCode.BAD_CONSUMER_SIGNATURE, sessionId?: string, missing?: boolean }
  | { code: typeof ReceiptErrorCode.BAD_EXIT_SIGNATURE, sessionId?: string, missing?: boolean }
  | { code: typeof ReceiptErrorCode.WRONG_PEER, reason: string }
  | { code: typeof ReceiptErrorCode.REGRESSED, sessionId: string, field: string, held: bigint, got: bigint }
  | { code: typeof ReceiptErrorCode.REPLAY, sessionId: string, reason: 'duplicate' | 'other-session' }
  | { code: typeof ReceiptErrorCode.CONFLICT, sessionId: string, seq: bigint }
  | { code: typeof ReceiptErrorCode.EXPIRED, sessionId: string, startedAt: bigint, prunedBefore: bigint }

export class ReceiptError extends Error {
  static name = 'ReceiptError'
  readonly code: ReceiptErrorCode
  readonly type: ReceiptErrorType
  /** The metadata of the error without its code. */
  readonly meta: Omit<ReceiptErrorType, 'code'>

  // no parameter properties: Node's type stripping cannot run them
  constructor (type: ReceiptErrorType, message?: string) {
    super(message ?? defaultReceiptMessage(type))
    this.name = 'ReceiptError'
    this.type = type
    this.code = type.code
    const { code, ...meta } = type
    this.meta = meta
  }
}

function defaultReceiptMessage (type: ReceiptErrorType): string {
  switch (type.code) {
    case ReceiptErrorCode.MALFORMED: return `malformed receipt: ${type.reason}`
    case ReceiptErrorCode.TOO_LARGE: return `receipt of ${type.size} B exceeds ${type.max} B`
    case ReceiptErrorCode.UNSUPPORTED_KEY: return `receipt ${type.field}: ${type.reason}`
    case ReceiptErrorCode.BAD_CONSUMER_SIGNATURE: return type.missing === true ? 'consumer signature missing' : 'consumer signature does not verify'
    case ReceiptErrorCode.BAD_EXIT_SIGNATURE: return type.missing === true ? 'exit signature missing' : 'exit signature does not verify'
    case ReceiptErrorCode.WRONG_PEER: return type.reason
    case ReceiptErrorCode.REGRESSED: return `receipt for session "${type.sessionId}" regresses ${type.field} from ${type.held} to ${type.got}`
    case ReceiptErrorCode.REPLAY: return type.reason === 'duplicate'
      ? `receipt for session "${type.sessionId}" was already accepted`
      : `receipt reuses session "${type.sessionId}" with another start time or price`
    case ReceiptErrorCode.CONFLICT: return `two different receipts for session "${type.sessionId}" carry seq ${type.seq}`
    case ReceiptErrorCode.EXPIRED: return `receipt for session "${type.sessionId}", started at ${type.startedAt}, is of a session not held here that may have been pruned (sessions started before ${type.prunedBefore} may have been)`
  }
}

export const LedgerErrorCode = {
  /** The file exists but is not an SQLite database. */
  NOT_SQLITE: 'LEDGER_ERROR_NOT_SQLITE',
  /** SQLite reports damage (open failure or `PRAGMA quick_check`). */
  CORRUPT: 'LEDGER_ERROR_CORRUPT',
  /** An SQLite database, but not a spareband ledger. */
  FOREIGN: 'LEDGER_ERROR_FOREIGN',
  /** Written by a newer spareband with a schema we do not know. */
  TOO_NEW: 'LEDGER_ERROR_TOO_NEW',
  /** The ledger belongs to another identity than the node opening it. */
  WRONG_IDENTITY: 'LEDGER_ERROR_WRONG_IDENTITY',
  /** A proof of work that does not meet the difficulty. */
  INVALID_POW: 'LEDGER_ERROR_INVALID_POW',
  /** Opened read-only, but the file must be written first: it is empty, or of an older schema. */
  READ_ONLY: 'LEDGER_ERROR_READ_ONLY',
  /** Used after close(). */
  CLOSED: 'LEDGER_ERROR_CLOSED',
  /** The file could not be opened or written (permissions, disk full). */
  IO: 'LEDGER_ERROR_IO'
} as const

export type LedgerErrorCode = typeof LedgerErrorCode[keyof typeof LedgerErrorCode]

export class LedgerError extends Error {
  static name = 'LedgerError'
  readonly code: LedgerErrorCode
  /** The ledger file concerned. */
  readonly file?: string

  constructor (code: LedgerErrorCode, message: string, file?: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'LedgerError'
    this.code = code
    this.file = file
  }
}

export const ReputationErrorCode = {
  /** A field is missing or out of range, or the bytes are not a report's canonical encoding. */
  MALFORMED: 'REPUTATION_ERROR_MALFORMED',
  /** The encoding exceeds MAX_REPUTATION_REPORT_BYTES. */
  TOO_LARGE: 'REPUTATION_ERROR_TOO_LARGE',
  /** reporter or subject is not the peer id of an Ed25519 key. */
  UNSUPPORTED_KEY: 'REPUTATION_ERROR_UNSUPPORTED_KEY',
  BAD_SIGNATURE: 'REPUTATION_ERROR_BAD_SIGNATURE',
  /** A report on oneself, or signed with a key that is not the reporter's. */
  WRONG_PEER: 'REPUTATION_ERROR_WRONG_PEER'
} as const

export type ReputationErrorCode = typeof ReputationErrorCode[keyof typeof ReputationErrorCode]

export class ReputationError extends Error {
  static name = 'ReputationError'
  readonly code: ReputationErrorCode

  constructor (code: ReputationErrorCode, message: string) {
    super(message)
    this.name = 'ReputationError'
    this.code = code
  }
}
