/** Errors the CLI turns into exit codes and one clear line, never a stack trace. */

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

/** What a file system error says, in words a user reads without looking up errno names. */
const FS_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EISDIR: 'it is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ELOOP: 'too many symbolic links'
}

export function describeFsError (err: any): string {
  const words = typeof err?.code === 'string' ? FS_ERRORS[err.code] : undefined
  if (words != null) return `${words} (${err.code})`
  return err?.code ?? err?.message ?? String(err)
}
