/**
 * Log lines a peer or a client can set off at will (a bad user name, a
 * receipt the ledger cannot write): at most a few per window, with the
 * count of those held back going with the next one let through, so a
 * misbehaving client or a failing disk cannot flood the operator's log.
 */

/** At most `limit` notices per `windowMs`; the count of those held back goes with the next one let through. */
export class NoticeLimiter {
  private windowStart = -Infinity
  private inWindow = 0
  private held = 0

  constructor (private readonly limit: number, private readonly windowMs = 60_000, private readonly now: () => number = Date.now) {}

  /** undefined: hold this one back; otherwise how many were held back before it. */
  take (): number | undefined {
    const t = this.now()
    if (t - this.windowStart >= this.windowMs) {
      this.windowStart = t
      this.inWindow = 0
    }
    if (this.inWindow >= this.limit) {
      this.held++
      return undefined
    }
    this.inWindow++
    const held = this.held
    this.held = 0
    return held
  }
}

/** Longest text a notice quotes (a request target alone may be 8 KiB). */
export const MAX_NOTICE_TEXT = 300

/**
 * Text a peer or a client made, fit for the operator's log: no terminal
 * escapes or line breaks of its making (as \xNN), and no 8 KiB lines.
 */
export function noticeText (text: string, max = MAX_NOTICE_TEXT): string {
  const clean = text.replace(/[\x00-\x1f\x7f-\x9f]/g, c => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
  return clean.length > max ? `${clean.slice(0, max)}...` : clean
}
