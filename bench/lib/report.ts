/**
 * Bench output: one aligned line per figure, `<bench>  <metric>  <value> <unit>  <note>`,
 * printed as soon as it is measured, plus a target summary at the end.
 */

export interface TargetCheck {
  name: string
  ok: boolean
  detail: string
}

export class Report {
  readonly targets: TargetCheck[] = []

  constructor (readonly bench: string, private readonly metricWidth = 44) {}

  line (metric: string, value: number | string, unit = '', note = ''): void {
    const v = typeof value === 'number' ? formatNumber(value) : value
    const text = `${this.bench}  ${metric.padEnd(this.metricWidth)}  ${v.padStart(10)} ${unit.padEnd(6)}${note !== '' ? `  ${note}` : ''}`
    console.log(text.trimEnd())
  }

  info (text: string): void {
    console.log(`${this.bench}  # ${text}`)
  }

  target (name: string, ok: boolean, detail: string): void {
    this.targets.push({ name, ok, detail })
  }

  summary (): void {
    console.log(`${this.bench}  targets:`)
    const w = Math.max(...this.targets.map(t => t.name.length))
    for (const t of this.targets) {
      console.log(`${this.bench}    [${t.ok ? 'met ' : 'MISS'}] ${t.name.padEnd(w)}  ${t.detail}`)
    }
    const missed = this.targets.filter(t => !t.ok).length
    console.log(`${this.bench}  ${this.targets.length - missed}/${this.targets.length} targets met`)
  }
}

export function formatNumber (n: number): string {
  if (!Number.isFinite(n)) return String(n)
  const abs = Math.abs(n)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2
  return n.toFixed(digits)
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))
  return sorted[i]
}

/** Decimal megabytes per second, as the cheat sheet's table. */
export function mbps (bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000)
}
