import { renameSync, writeFileSync } from 'node:fs'

/**
 * Writes `value` as JSON to `file` so that a crash leaves the old file or
 * the new one, never half of one: a temporary file, then a rename over it.
 */
export function writeJsonAtomically (file: string, value: unknown): void {
  const tmp = `${file}.tmp`
  writeFileSync(tmp, JSON.stringify(value) + '\n')
  renameSync(tmp, file)
}
