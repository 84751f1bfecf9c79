import { describe, it, expect } from 'vitest'
import { isValidRegion, normalizeRegion, regionKeysFor, regionMatches } from '../../src/routing/regions.ts'
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
