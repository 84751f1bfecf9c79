/**
 * Byte counts as people read them (decimal units, three significant digits
 * at most), for the CLI's output and the node's warnings alike.
 */

/** 1234 -> "1.23 kB", 8_388_608 -> "8.39 MB", 2e9 -> "2 GB". */
export function bytesText (bytes: number): string {
  for (const [unit, size] of [['TB', 1e12], ['GB', 1e9], ['MB', 1e6]] as const) if (bytes >= size) return `${threeDigits(bytes / size)} ${unit}`
  return `${threeDigits(bytes / 1e3)} kB`
}

/** Three significant digits at most: 1.23, 12.3, 123, 1234. */
export function threeDigits (n: number): string {
  return String(n >= 100 ? Math.round(n) : Number(n.toPrecision(3)))
}
