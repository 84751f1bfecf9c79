/**
 * The start log's account of the node's warnings (status().warnings) over
 * its run: each one when it appears, and a line when it is over. Printed
 * only once at start, a warning that came later (the node ran out of
 * credit, lost its last peer) reached no one who does not poll `status`.
 *
 * A warning is known by what comes before its first colon ("out of
 * credit"): the rest may carry figures that change while it lasts (a
 * balance), which are no new warning.
 */

/** How often the running node's warnings are read. */
export const WARNING_CHECK_MS = 10_000

export interface WarningChanges {
  /** Whole texts of the warnings that appeared. */
  appeared: string[]
  /** The names (see warningName) of those that are over. */
  cleared: string[]
}

/** What a warning is known by: its text up to the first colon. */
export function warningName (warning: string): string {
  // the first ': ' (or a final ':'), not the colons of a time in the name (since 2026-11-27T04:25:00.000Z)
  const m = /:(\s|$)/.exec(warning)
  return m == null ? warning : warning.slice(0, m.index)
}

/** What changed from `shown` (by name) to `now`; updates `shown` to `now`. */
export function warningChanges (shown: Map<string, string>, now: readonly string[]): WarningChanges {
  const current = new Map(now.map(w => [warningName(w), w]))
  const appeared = [...current].filter(([name]) => !shown.has(name)).map(([, text]) => text)
  const cleared = [...shown.keys()].filter(name => !current.has(name))
  shown.clear()
  for (const [name, text] of current) shown.set(name, text)
  return { appeared, cleared }
}

export interface WarningWatch {
  /** Reads the warnings now, between the timer's readings: for an event known to change them. */
  check: () => void
  stop: () => void
}

/**
 * Calls `report` with what changed in `read()` every `everyMs`, and on
 * check(), starting from `initial` (what was already logged).
 */
export function watchWarnings (read: () => readonly string[], initial: readonly string[], report: (changes: WarningChanges) => void, everyMs = WARNING_CHECK_MS): WarningWatch {
  const shown = new Map(initial.map(w => [warningName(w), w]))
  const check = (): void => {
    let now: readonly string[]
    try {
      now = read()
    } catch {
      // a node stopping under us: its next reading, if any, says more
      return
    }
    const changes = warningChanges(shown, now)
    if (changes.appeared.length > 0 || changes.cleared.length > 0) report(changes)
  }
  const timer = setInterval(check, everyMs)
  timer.unref()
  return { check, stop: () => { clearInterval(timer) } }
}
