/**
 * Opens a file or URL with the desktop's default application, as a person
 * double-clicking it would. Only `spareband dashboard` uses it.
 */

import { spawn } from 'node:child_process'

export type OpenResult = { opened: true } | { opened: false, reason: string }

/**
 * How long an opener that fails says so. xdg-open exits at once with a
 * non-zero code when it finds no handler, but may stay until the browser
 * it started exits, so a still-running opener counts as a success.
 */
const OPENER_FAILS_WITHIN_MS = 1500

export interface Opener { command: string, platform: NodeJS.Platform }

/** The opener of this platform, or why there is none: a caller can then skip what opening needs. */
export function desktopOpener (platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): Opener | { reason: string } {
  if (platform === 'darwin') return { command: 'open', platform }
  if (platform === 'win32') return { command: 'explorer.exe', platform }
  // over ssh or on a server there is no session to show a window in, and xdg-open would fall back to a text browser in this terminal
  if ((env.DISPLAY ?? '') === '' && (env.WAYLAND_DISPLAY ?? '') === '') return { reason: 'there is no graphical session here (DISPLAY and WAYLAND_DISPLAY are unset)' }
  return { command: 'xdg-open', platform }
}

export async function openWith (opener: Opener, target: string): Promise<OpenResult> {
  return new Promise(resolve => {
    const child = spawn(opener.command, [target], { detached: true, stdio: 'ignore' })
    const timer = setTimeout(() => {
      child.unref()
      resolve({ opened: true })
    }, OPENER_FAILS_WITHIN_MS)
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      resolve({ opened: false, reason: `${opener.command}: ${err.code ?? err.message}` })
    })
    child.once('exit', code => {
      clearTimeout(timer)
      // explorer.exe exits 1 even when it opened the file
      resolve(code === 0 || opener.platform === 'win32' ? { opened: true } : { opened: false, reason: `${opener.command} exited ${code}` })
    })
  })
}
