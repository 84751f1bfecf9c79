import { describe, it, expect } from 'vitest'
import { parse as parseToml } from 'smol-toml'
import { CONFIG_TEMPLATE } from '../../src/cli/commands/init.ts'
import { defaultConfig, resolveConfig } from '../../src/node/config.ts'

/** The template with every commented section and key line uncommented, as an operator would. */
const uncommented = (text: string): string => text.replace(/^# (\[|[a-z_]+ = )/gm, '$1')

describe('the config.toml spareband init writes', () => {
  it('names every limit an exit owner can set, except the testnet-only allow_private_targets and the connect timeout', () => {
    const exit = (parseToml(uncommented(CONFIG_TEMPLATE())) as any).exit
    const expected = Object.keys(defaultConfig.exit).filter(k => k !== 'allow_private_targets' && k !== 'connect_timeout_seconds')
    expect(Object.keys(exit).sort()).toEqual(expected.sort())
  })

  it('names the control API port, which a second node on the machine must change', () => {
    expect((parseToml(uncommented(CONFIG_TEMPLATE())) as any).api).toEqual({ port: defaultConfig.api.port })
  })

  it('uncommented, gives each key its default (region and proxy.default_region are examples)', () => {
    const config = resolveConfig([{ source: 'template', values: parseToml(uncommented(CONFIG_TEMPLATE('de'))) }])
    expect(config.region).toBe('de')
    expect(config.proxy.default_region).toBe('de')
    expect({ ...config, region: undefined, proxy: { ...config.proxy, default_region: undefined } }).toEqual({ ...structuredClone(defaultConfig), region: undefined, proxy: { ...defaultConfig.proxy, default_region: undefined } })
  })
})
