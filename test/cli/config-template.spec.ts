import { describe, it, expect } from 'vitest'
import { parse as parseToml } from 'smol-toml'
import { CONFIG_TEMPLATE } from '../../src/cli/commands/init.ts'
import { defaultConfig, resolveConfig } from '../../src/node/config.ts'

/** The template with every commented section and key line uncommented, as an operator would. */
const uncommented = (text: string): string => text.replace(/^# (\[|[a-z_]+ = )/gm, '$1')

describe('the config.toml spareband init writes', () => {
  it('names every setting there is, in every section (the network\'s name, DHT protocol and topics come from --network)', () => {
    const template = parseToml(uncommented(CONFIG_TEMPLATE('de'))) as any
    const fromNetwork = new Set(['name', 'dht_protocol', 'receipts_topic', 'reputation_topic'])
    for (const [key, value] of Object.entries(defaultConfig)) {
      if (value != null && typeof value === 'object' && !Array.isArray(value)) {
        const expected = Object.keys(value).filter(k => key !== 'network' || !fromNetwork.has(k))
        // the proxy credentials have no default to show: the template tells of them in words
        if (key === 'proxy') expected.push('default_region')
        expect(Object.keys(template[key]).sort(), key).toEqual(expected.sort())
      } else {
        expect(template[key], key).toEqual(value)
      }
    }
    expect(CONFIG_TEMPLATE()).toMatch(/set password = "...",\n#\s+# and username = "..."/)
  })

  it('uncommented, gives each key its default (region and proxy.default_region are examples)', () => {
    const config = resolveConfig([{ source: 'template', values: parseToml(uncommented(CONFIG_TEMPLATE('de'))) }])
    expect(config.region).toBe('de')
    expect(config.proxy.default_region).toBe('de')
    expect({ ...config, region: undefined, proxy: { ...config.proxy, default_region: undefined } }).toEqual({ ...structuredClone(defaultConfig), region: undefined, proxy: { ...defaultConfig.proxy, default_region: undefined } })
  })
})
