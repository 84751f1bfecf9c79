/**
 * Regions are ISO 3166-1 alpha-2 country codes in lower case, optionally
 * followed by an ISO 3166-2 subdivision: `de`, `us`, `us-ca`. Validated
 * against the code lists of the `iso-3166` package, not a hand-written list.
 *
 * `uk` is the United Kingdom to everyone who types a region, and ISO 3166
 * reserves it for that, but the country's code is `gb`: normalizeRegion()
 * turns `uk` (and `uk-<subdivision>`) into `gb`, so the proxy's user names,
 * config.toml, the flags and the library all take it alike, and only `gb`
 * is ever advertised or looked up.
 */

import { iso31661, iso31662 } from 'iso-3166'

const countries = new Set(iso31661.map(c => c.alpha2.toLowerCase()))
const subdivisions = new Set(iso31662.map(s => s.code.toLowerCase()))

export function normalizeRegion (region: string): string {
  const r = region.trim().toLowerCase()
  return r === 'uk' || r.startsWith('uk-') ? `gb${r.slice(2)}` : r
}

export function isValidRegion (region: string): boolean {
  const r = normalizeRegion(region)
  if (countries.has(r)) return true
  return subdivisions.has(r)
}

/**
 * For a known country with an unknown subdivision (`de-zz`), which part is
 * wrong: "not a country code" sent the user to fix the part that was right.
 * Undefined for a region, and for anything else that is none (the caller's
 * own words about country codes fit it).
 */
export function subdivisionProblem (region: string): string | undefined {
  const r = normalizeRegion(region)
  const dash = r.indexOf('-')
  if (isValidRegion(r) || dash <= 0 || !countries.has(r.slice(0, dash))) return undefined
  const example = iso31662.find(s => s.code.toLowerCase().startsWith(`${r.slice(0, dash)}-`))?.code.toLowerCase()
  return `${r.slice(0, dash)} is a country, but ${r.slice(dash + 1)} is none of its ISO 3166-2 subdivisions${example != null ? ` (e.g. ${example})` : ' (it has none)'}`
}

/** `region` normalized, for an app's argument: a TypeError naming it when it is no region. */
export function regionArgument (region: unknown): string {
  const wanted = typeof region === 'string' ? normalizeRegion(region) : ''
  if (!isValidRegion(wanted)) throw new TypeError(`unknown region ${JSON.stringify(region)}: ${subdivisionProblem(wanted) ?? 'an ISO 3166-1 country code, optionally with a subdivision (de, us-ca)'}`)
  return wanted
}

/** The country part of a region: `us-ca` -> `us`. */
export function countryOf (region: string): string {
  return normalizeRegion(region).split('-')[0]
}

/**
 * The region keys an exit in `region` provides: its country and, if it has
 * one, its subdivision (docs/PROTOCOLS.md, "Region keys").
 */
export function regionKeysFor (region: string): string[] {
  const r = normalizeRegion(region)
  const country = countryOf(r)
  return r === country ? [country] : [country, r]
}

/** Does an exit in `exitRegion` serve a request for `wanted`? `us-ca` serves `us`; `us` does not serve `us-ca`. */
export function regionMatches (exitRegion: string | undefined, wanted: string): boolean {
  if (exitRegion == null) return false
  return regionKeysFor(exitRegion).includes(normalizeRegion(wanted))
}
