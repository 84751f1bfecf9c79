/**
 * Files whose readers can act as the node (identity.key, api-token, a
 * config file holding the proxies' password) are made 0600, but a copy
 * restored from a backup, or written by an editor, gets the mode of the
 * day. status() warns while others than the owner can read one.
 */

import { statSync } from 'node:fs'

/** `file`'s permission bits when any of `mask` opens it to others than its owner, else undefined: private, missing, or on Windows (no POSIX modes). */
export function modeOpenToOthers (file: string, mask = 0o077): number | undefined {
  if (process.platform === 'win32') return undefined
  let mode: number
  try {
    mode = statSync(file).mode & 0o777
  } catch {
    return undefined
  }
  return (mode & mask) === 0 ? undefined : mode
}

/** The warning for such a file: what it holds (when that is what matters), what its readers can do, and the chmod that ends it. */
export function readableByOthersWarning (file: string, mode: number, readersCan: string, holds?: string): string {
  return `${file}${holds != null ? ` holds ${holds} and` : ''} can be read by other users (mode ${mode.toString(8).padStart(4, '0')}): whoever reads it ${readersCan}; run "chmod 600 ${file}"`
}
