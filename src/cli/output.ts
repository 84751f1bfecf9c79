/**
 * Everything the CLI prints goes through here: tables for people, JSON for
 * programs, and structured `key=value` log lines for a running node.
 */

import { bytesText, threeDigits } from '../byte-units.ts'
import { describeFsError } from './errors.ts'

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? v.toString() : v, 2) + '\n')
}

/** A plain aligned table; `rows` are arrays of cells in `headers` order. */
export function formatTable (headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = [headers, ...rows.map(r => r.map(c => c == null ? '-' : String(c)))]
  const widths = headers.map((_, i) => Math.max(...cells.map(r => (r[i] ?? '').length)))
  return cells.map(r => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('  ')).join('\n') + '\n'
}

/** Key/value lines for one object, nested keys dotted, values aligned. */
export function formatKeyValues (obj: Record<string, unknown>): string {
  const rows = flatten(obj)
  const width = Math.max(0, ...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => {
    const text = Array.isArray(v)
      ? (v.length === 0 ? '-' : v.map(formatElement).join('\n' + ' '.repeat(width + 2)))
      : (v == null ? '-' : isEpochMs(k, v) ? new Date(v).toISOString() : String(v) + unitNote(k, v))
    return `${k.padEnd(width)}  ${text}\n`
  }).join('')
}

/** One element of a listed array: an object (a relay's state, say) as its fields, `key=value` each, not "[object Object]". */
function formatElement (v: unknown): string {
  if (v == null || typeof v !== 'object') return String(v)
  return Object.entries(v).map(([k, x]) => `${k}=${x == null ? '-' : typeof x === 'object' ? JSON.stringify(x) : String(x)}`).join(' ')
}

/** A time stamp in ms since the epoch (`lastPublishedAt`, `expiresAt`): people read it as a date. */
function isEpochMs (key: string, v: unknown): v is number {
  return key.endsWith('At') && typeof v === 'number' && Number.isFinite(v) && v > 1e12
}

/**
 * What a raw count in bytes or bytes per second means to a person, after
 * it: `exit.bytesOut  3456789012 (3.46 GB)`, `...downloadBytesPerSecond
 * 1250000 (10 Mbit/s)` (the unit exit.download_mbps is set in). The number
 * itself stays as the JSON has it, so it can be copied and compared.
 */
function unitNote (key: string, v: unknown): string {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return ''
  const name = key.slice(key.lastIndexOf('.') + 1)
  if (name.endsWith('BytesPerSecond')) return ` (${threeDigits(v * 8 / 1e6)} Mbit/s)`
  if (v >= 1000 && (/^bytes[A-Z]/.test(name) || name.endsWith('Bytes'))) return ` (${bytesText(v)})`
  return ''
}

function flatten (obj: Record<string, unknown>, prefix = ''): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = []
  for (const [k, v] of Object.entries(obj)) {
    if (v != null && typeof v === 'object' && !Array.isArray(v)) out.push(...flatten(v as Record<string, unknown>, `${prefix}${k}.`))
    else out.push([prefix + k, v])
  }
  return out
}

export type LogLevel = 'info' | 'warn' | 'error'

/** One structured log line to stderr: `2026-01-01T00:00:00.000Z info  message key=value ...`. */
export function log (level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
  const kv = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${formatValue(v)}`)
    .join(' ')
  process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}${kv === '' ? '' : ' ' + kv}\n`)
}

function formatValue (v: unknown): string {
  const s = Array.isArray(v) ? v.join(',') : String(v)
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s
}

/**
 * For a command that prints and ends: a reader that stopped reading
 * (`spareband providers | head -1`) is no error of ours, so it stops
 * quietly, as other command-line tools do, rather than die on an unhandled
 * EPIPE with a stack trace. Long-running commands trade this for
 * surviveClosedOutput().
 */
export function exitQuietlyWhenOutputCloses (): void {
  process.stdout.on('error', exitQuietly)
}

function exitQuietly (err: NodeJS.ErrnoException): void {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  // output that cannot be written (a full disk, a device that fails): one line on stderr, not a
  // stack trace, and exit 1, for what was written is incomplete (an export cut short)
  process.stderr.write(`spareband: cannot write the output: ${describeFsError(err)}; what was written is incomplete\n`)
  process.exit(1)
}

/**
 * For a long-running node: whoever reads its log may go away (the pipe's
 * reader exits: `spareband start | tee log` stopped, a closed terminal, a
 * log shipper restarted). Node then fails the next write with EPIPE (EIO on
 * a terminal) as an 'error' event no one handled, and the node died on the
 * spot, without its clean stop, because of a log line. Its lines are then
 * lost; the node goes on, and `status` still tells how it is.
 */
export function surviveClosedOutput (): void {
  process.stdout.off('error', exitQuietly)
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE' && err.code !== 'EIO' && err.code !== 'ERR_STREAM_DESTROYED') throw err
    })
  }
}
