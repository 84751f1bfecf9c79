import { describe, it, expect, expectTypeOf } from 'vitest'
import { createSparebandNode, defaultConfig, resolveConfig } from '../../src/index.ts'

/**
 * defaultConfig is exported for apps to read (and the CLI's help takes its
 * defaults from it); every node's config starts from a clone of it. An app
 * that writes to it must not change the defaults of every node the process
 * makes afterwards.
 */
describe('defaultConfig', () => {
  it('cannot be changed by an app: a write throws, and later configs keep the defaults', () => {
    const d = defaultConfig as any
    const before = { enabled: d.exit.enabled, listen: [...d.listen] }
    let threw = 0
    try {
      try { d.exit.enabled = false } catch (err) { if (err instanceof TypeError) threw++ }
      try { d.listen.push('/ip4/0.0.0.0/tcp/9') } catch (err) { if (err instanceof TypeError) threw++ }
      expect(threw).toBe(2)
      expect(resolveConfig([]).exit.enabled).toBe(true)
      expect(resolveConfig([]).listen).toEqual(before.listen)
    } finally {
      // on a defaultConfig that took the writes, put it back for the rest of the run
      if (!Object.isFrozen(d.exit)) d.exit.enabled = before.enabled
      if (!Object.isFrozen(d.listen)) d.listen.splice(0, d.listen.length, ...before.listen)
    }
  })

  it('is typed read-only, so such a write does not compile either', () => {
    const write = (): void => {
      // @ts-expect-error a read-only property
      defaultConfig.exit.enabled = false
      // @ts-expect-error a read-only array
      defaultConfig.listen.push('/ip4/0.0.0.0/tcp/9')
    }
    expect(write).toThrow(TypeError)
    expect(defaultConfig.exit.enabled).toBe(true)
  })

  it('can be passed back in, whole or in parts, read-only as it is', () => {
    type Init = NonNullable<Parameters<typeof createSparebandNode>[0]>
    const parts: Init = { config: { listen: defaultConfig.listen, exit: { allowed_ports: defaultConfig.exit.allowed_ports } } }
    const whole: Init = { resolvedConfig: defaultConfig }
    expectTypeOf(parts).toExtend<Init>()
    expect(resolveConfig([{ source: 'x', values: parts.config! }]).exit.allowed_ports).toEqual([80, 443])
    expect(whole.resolvedConfig).toBe(defaultConfig)
  })

  it('still gives each node a config of its own to hold', () => {
    const c = resolveConfig([])
    c.exit.allowed_ports.push(8080)
    expect(resolveConfig([]).exit.allowed_ports).toEqual([80, 443])
  })
})
