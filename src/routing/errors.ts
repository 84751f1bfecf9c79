/**
 * Errors of the routing area. Callers and tests match on `name` and `code`,
 * never on the message; `meta` is there to be logged. Codes are `as const`
 * objects rather than TypeScript enums so the files run under Node's type
 * stripping.
 */

export const CapacityAdErrorCode = {
  /** The record is larger than MAX_CAPACITY_AD_BYTES. */
  TOO_LARGE: 'CAPACITY_AD_ERROR_TOO_LARGE',
  /** The bytes do not decode as a CapacityAd. */
  MALFORMED: 'CAPACITY_AD_ERROR_MALFORMED',
  /** A field is missing, out of range or unparsable. */
  INVALID_FIELD: 'CAPACITY_AD_ERROR_INVALID_FIELD',
  /** The DHT key is not `/spareband/cap/` + a peer id. */
  BAD_KEY: 'CAPACITY_AD_ERROR_BAD_KEY',
  /** The peer id in the record is not the one in its key. */
  PEER_MISMATCH: 'CAPACITY_AD_ERROR_PEER_MISMATCH',
  /** The peer id does not embed its public key (RSA), so the signature cannot be checked. */
  UNSUPPORTED_KEY: 'CAPACITY_AD_ERROR_UNSUPPORTED_KEY',
  /** Missing signature, or one that does not verify with the peer id's key. */
  BAD_SIGNATURE: 'CAPACITY_AD_ERROR_BAD_SIGNATURE',
  /** expires_at is in the past. */
  EXPIRED: 'CAPACITY_AD_ERROR_EXPIRED',
  /** expires_at is further ahead than MAX_AD_LIFETIME (plus clock skew). */
  TOO_FAR_IN_FUTURE: 'CAPACITY_AD_ERROR_TOO_FAR_IN_FUTURE'
} as const

export type CapacityAdErrorCode = typeof CapacityAdErrorCode[keyof typeof CapacityAdErrorCode]

/** Metadata that can be logged with each code. */
export type CapacityAdErrorType =
  | { code: typeof CapacityAdErrorCode.TOO_LARGE, size: number, max: number }
  | { code: typeof CapacityAdErrorCode.MALFORMED, reason: string }
  | { code: typeof CapacityAdErrorCode.INVALID_FIELD, field: string, reason: string }
  | { code: typeof CapacityAdErrorCode.BAD_KEY, reason: string }
  | { code: typeof CapacityAdErrorCode.PEER_MISMATCH }
  | { code: typeof CapacityAdErrorCode.UNSUPPORTED_KEY, reason: string }
  | { code: typeof CapacityAdErrorCode.BAD_SIGNATURE, missing?: boolean }
  | { code: typeof CapacityAdErrorCode.EXPIRED, expiresAt: number, now: number }
  | { code: typeof CapacityAdErrorCode.TOO_FAR_IN_FUTURE, expiresAt: number, now: number, max: number }

export class CapacityAdError extends Error {
  static name = 'CapacityAdError'
  readonly code: CapacityAdErrorCode
  /** The metadata of the error without its code. */
  readonly meta: Omit<CapacityAdErrorType, 'code'>

  constructor (readonly type: CapacityAdErrorType, message?: string) {
    super(message ?? defaultCapacityAdMessage(type))
    this.name = 'CapacityAdError'
    this.code = type.code
    const { code, ...meta } = type
    this.meta = meta
  }
}

function defaultCapacityAdMessage (type: CapacityAdErrorType): string {
  switch (type.code) {
    case CapacityAdErrorCode.TOO_LARGE: return `capacity ad of ${type.size} B exceeds ${type.max} B`
    case CapacityAdErrorCode.MALFORMED: return `malformed capacity ad: ${type.reason}`
    case CapacityAdErrorCode.INVALID_FIELD: return `capacity ad field ${type.field}: ${type.reason}`
    case CapacityAdErrorCode.BAD_KEY: return `bad capacity record key: ${type.reason}`
    case CapacityAdErrorCode.PEER_MISMATCH: return 'the peer id in the capacity ad is not the one in its key'
    case CapacityAdErrorCode.UNSUPPORTED_KEY: return `capacity ad key: ${type.reason}`
    case CapacityAdErrorCode.BAD_SIGNATURE: return type.missing === true ? 'capacity ad is not signed' : 'capacity ad signature does not verify'
    case CapacityAdErrorCode.EXPIRED: return `capacity ad expired at ${type.expiresAt} (now ${type.now})`
    case CapacityAdErrorCode.TOO_FAR_IN_FUTURE: return `capacity ad expires at ${type.expiresAt}, more than ${type.max} ms after ${type.now}`
  }
}

/** A region that is not an ISO 3166 code was passed where a region key is made. */
export class InvalidRegionError extends Error {
  static name = 'InvalidRegionError'
  constructor (message = 'Invalid region') {
    super(message)
    this.name = 'InvalidRegionError'
  }
}
