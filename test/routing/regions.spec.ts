import { describe, it, expect } from 'vitest'
import { isValidRegion, normalizeRegion, regionArgument, regionKeysFor, regionMatches, subdivisionProblem } from '../../src/routing/regions.ts'
import { resolveConfig, layerFromKeys } from '../../src/node/config.ts'
import { parseRegionArg } from '../../src/cli/config-from-flags.ts'
import { parseTargeting } from '../../src/relay/targeting.ts'

describe('regions: `uk` is the United Kingdom, `gb`, wherever a region is typed', () => {
  it('normalises uk and uk-<subdivision> to gb', () => {
    expect(normalizeRegion(' UK ')).toBe('gb')
    expect(normalizeRegion('uk-eng')).toBe('gb-eng')
    expect(isValidRegion('uk')).toBe(true)
    expect(isValidRegion('uk-sct')).toBe(true)
    expect(regionKeysFor('uk-eng')).toEqual(['gb', 'gb-eng'])
    expect(regionMatches('gb-eng', 'uk')).toBe(true)
    // other codes are left alone; Ukraine is ua
    expect(normalizeRegion('ua')).toBe('ua')
    expect(normalizeRegion('ukr')).toBe('ukr')
    expect(isValidRegion('ukr')).toBe(false)
  })

  it('as the proxy user name, the config, and the flags of providers and probe take it', () => {
    expect(parseTargeting('region-uk').region).toBe('gb')
    const config = resolveConfig([layerFromKeys([
      { key: 'region', value: 'uk', source: 'flag --region' },
      { key: 'proxy.default_region', value: 'UK-Wls', source: 'flag --default-region' }
    ])])
    expect(config.region).toBe('gb')
    expect(config.proxy.default_region).toBe('gb-wls')
    expect(parseRegionArg('uk')).toBe('gb')
  })
})

describe('why a region is none (subdivisionProblem)', () => {
  it('says which part is wrong: a known country with an unknown subdivision is not "no country code"', () => {
    expect(subdivisionProblem('de')).toBeUndefined()
    expect(subdivisionProblem('us-ca')).toBeUndefined()
    expect(subdivisionProblem('UK')).toBeUndefined()
    expect(subdivisionProblem('de-zz')).toMatch(/^de is a country, but zz is none of its ISO 3166-2 subdivisions \(e\.g\. de-[a-z]{2}\)$/)
    // no country: the caller's own words
    expect(subdivisionProblem('zz')).toBeUndefined()
    expect(subdivisionProblem('xx-yy')).toBeUndefined()
    // the same words wherever a region is typed: init, start's flag and config.toml, the library
    expect(() => regionArgument('de-zz')).toThrow(/^unknown region "de-zz": de is a country, but zz is none of its ISO 3166-2 subdivisions/)
    expect(() => regionArgument('zz')).toThrow('unknown region "zz": an ISO 3166-1 country code, optionally with a subdivision (de, us-ca)')
    expect(() => parseRegionArg('de-zz')).toThrow(/^"de-zz" is not a region: de is a country, but zz is none of its ISO 3166-2 subdivisions \(e\.g\. de-[a-z]{2}\)\.$/)
    expect(() => resolveConfig([layerFromKeys([{ key: 'region', value: 'de-zz', source: 'test' }])])).toThrow(/region = "de-zz" is invalid: de is a country, but zz is none of its ISO 3166-2 subdivisions/)
  })
})
