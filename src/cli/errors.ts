/** Errors the CLI turns into exit codes and one clear line, never a stack trace. */

export { describeFsError } from '../errors.ts'

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
