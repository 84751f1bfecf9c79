/** Errors the CLI turns into exit codes and one clear line, never a stack trace. */

import { fsErrorWords } from '../errors.ts'

export const EXIT_OK = 0
export const EXIT_FAILURE = 1
/** Bad flags, bad config: the user must change the command line or a file. */
export const EXIT_USAGE = 2

export class UsageError extends Error {
  static name = 'UsageError'
  constructor (message = 'Invalid usage') {
    super(message)
    this.name = 'UsageError'
  }
}

/** What a file system error says, in words with its code: "no such file (ENOENT)". */
export function describeFsError (err: any): string {
  const words = fsErrorWords(err)
  if (words != null) return `${words} (${String(err.code)})`
  return err?.code ?? err?.message ?? String(err)
}
