/**
 * Port lists for the exit policy: `80,443,8000-8100`, numbers, or the named
 * preset `reduced` (the ports of Tor's ReducedExitPolicy).
 */

export type PortRange = [number, number]

/**
 * Tor's ReducedExitPolicy accept list: common services that are rarely the
 * source of abuse complaints.
 * @see https://trac.torproject.org/projects/tor/wiki/doc/ReducedExitPolicy
 */
export const REDUCED_EXIT_PORTS = '20-23,43,53,79-81,88,110,143,194,220,389,443,464,465,531,543-544,554,563,587,636,706,749,853,873,902-904,981,989-995,1194,1220,1293,1500,1533,1677,1723,1755,1863,2082,2083,2086-2087,2095-2096,2102-2104,3128,3389,3690,4321,4643,5050,5190,5222-5223,5228,5900,6660-6669,6679,6697,8000,8008,8074,8080,8082,8087-8088,8232-8233,8332-8333,8443,8888,9418,9999,10000,11371,19294,19638,50002,64738'

export class PortListError extends Error {
  static name = 'PortListError'
  constructor (message = 'Invalid port list') {
    super(message)
    this.name = 'PortListError'
  }
}

function parsePort (s: string, whole: string): number {
  if (!/^\d{1,5}$/.test(s)) throw new PortListError(`"${whole}" is not a port or range: expected N or N-M with ports 1-65535, or "reduced"`)
  const n = Number(s)
  if (n < 1 || n > 65535) throw new PortListError(`port ${n} in "${whole}" is out of range 1-65535`)
  return n
}

/** Parses entries like `80`, `"443"`, `"8000-8100"`, `"80,443"` or `"reduced"` into sorted, merged ranges. */
export function parsePortList (entries: ReadonlyArray<string | number>): PortRange[] {
  const parts = entries.flatMap(entry => String(entry).split(',').map(raw => raw.trim()))
  // a list of blanks is "no ports", which the caller words; a blank among ports is a typo
  // (`80,,443`, `80,443,`) that would otherwise pass without a word
  if (parts.some(part => part === '') && parts.some(part => part !== '')) {
    throw new PortListError(`"${entries.join(',')}" has an empty entry: write ports and ranges separated by single commas, e.g. 80,443,8000-8100`)
  }
  const ranges: Array<[number, number]> = []
  for (const part of parts) {
    if (part === '') continue
    if (part.toLowerCase() === 'reduced') {
      ranges.push(...parsePortList([REDUCED_EXIT_PORTS]))
      continue
    }
    const m = part.split('-')
    if (m.length === 1) {
      const p = parsePort(m[0], part)
      ranges.push([p, p])
    } else if (m.length === 2) {
      const lo = parsePort(m[0], part)
      const hi = parsePort(m[1], part)
      if (lo > hi) throw new PortListError(`range "${part}" is empty: ${lo} > ${hi}`)
      ranges.push([lo, hi])
    } else {
      throw new PortListError(`"${part}" is not a port or range: expected N or N-M`)
    }
  }
  ranges.sort((a, b) => a[0] - b[0])
  const merged: Array<[number, number]> = []
  for (const r of ranges) {
    const last = merged[merged.length - 1]
    if (last != null && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1])
    else merged.push([r[0], r[1]])
  }
  return merged
}

export function portAllowed (ranges: readonly PortRange[], port: number): boolean {
  for (const [lo, hi] of ranges) if (port >= lo && port <= hi) return true
  return false
}

export function formatPortList (ranges: readonly PortRange[]): string {
  return ranges.map(([lo, hi]) => lo === hi ? String(lo) : `${lo}-${hi}`).join(',')
}
