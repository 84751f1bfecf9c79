/**
 * The start log's account of the node's warnings (status().warnings) over
 * its run: each one when it appears, and a line when it is over. Printed
 * only once at start, a warning that came later (the node ran out of
 * credit, lost its last peer) reached no one who does not poll `status`.
 */

/** How often the running node's warnings are read. */
export const WARNING_CHECK_MS = 10_000

export interface WarningChanges {
  appeared: string[]
  cleared: string[]
}

/** What changed from `before` to `now`; updates `before` to `now`. */
export function warningChanges (before: Set<string>, now: readonly string[]): WarningChanges {
  const current = new Set(now)
  const appeared = [...current].filter(w => !before.has(w))
  const cleared = [...before].filter(w => !current.has(w))
  before.clear()
  for (const w of current) before.add(w)
  return { appeared, cleared }
}

/**
 * Calls `report` with what changed in `read()` every `everyMs`, starting
 * from `initial` (what was already logged). Returns the function that stops it.
 */
export function watchWarnings (read: () => readonly string[], initial: readonly string[], report: (changes: WarningChanges) => void, everyMs = WARNING_CHECK_MS): () => void {
  const shown = new Set(initial)
  const timer = setInterval(() => {
    let now: readonly string[]
    try {
      now = read()
    } catch {
      // a node stopping under us: its next reading, if any, says more
      return
    }
    const changes = warningChanges(shown, now)
    if (changes.appeared.length > 0 || changes.cleared.length > 0) report(changes)
  }, everyMs)
  timer.unref()
  return () => { clearInterval(timer) }
}
