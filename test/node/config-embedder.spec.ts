import { describe, it, expect } from 'vitest'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { createSparebandNode } from '../../src/index.ts'
import { readConfigFile, resolveConfig } from '../../src/node/config.ts'
import { tempDir } from '../utils/cli.ts'
import type { SparebandConfigInput } from '../../src/index.ts'

const SOURCE = 'createSparebandNode() config'

/** What an embedding app hears from createSparebandNode() about a bad config: a ConfigError naming the key and where it came from, before anything listens. */
const refused = async (config: Record<string, unknown>, extra: { configFile?: string } = {}): Promise<any> => {
  const dataDir = await tempDir('sb-config-embed-')
  const result = await createSparebandNode({ dataDir, config: config as SparebandConfigInput, ...extra }).then(async node => {
    await node.stop()
    return 'created'
  }, err => err)
  return result
}

describe('config errors an embedding app gets from createSparebandNode()', () => {
  it('an unknown key names the app\'s config as its source, and lists every key allowed there', async () => {
    const top = await refused({ regoin: 'de' })
    expect(top.name).toBe('ConfigError')
    expect(top.source).toBe(SOURCE)
    expect(top.key).toBe('regoin')
    expect(top.message.startsWith(`${SOURCE}: unknown key "regoin", did you mean "region"? (allowed here: `)).toBe(true)
    expect(top.message).toMatch(/allowed here: region, network, listen/)
    const nested = await refused({ proxy: { usrname: 'me' } })
    expect(nested.source).toBe(SOURCE)
    expect(nested.key).toBe('proxy.usrname')
    expect(nested.message).toMatch(/did you mean "proxy.username"\? \(allowed here: .*\busername\b.*/)
    expect(nested.message).toMatch(/allowed here: .*\bdefault_region\b.*/)
  })

  it('a resolved config an app changed is checked as config is, before anything is written', async () => {
    const dataDir = join(await tempDir('sb-config-embed-'), 'node')
    const bad = structuredClone(resolveConfig([])) as any
    bad.api.port = 99999
    const err = await createSparebandNode({ dataDir, resolvedConfig: bad }).then(() => 'created', e => e)
    expect(err.name).toBe('ConfigError')
    expect(err.key).toBe('api.port')
    expect(err.message).toMatch(/^createSparebandNode\(\) resolvedConfig: api\.port = 99999 /)
    const wrongShape = await createSparebandNode({ dataDir, resolvedConfig: { exit: { max_tunnels: 0 } } as any }).then(() => 'created', e => e)
    expect(wrongShape.name).toBe('ConfigError')
    expect(wrongShape.key).toBe('exit.max_tunnels')
    expect(existsSync(dataDir)).toBe(false)
  })

  it('the same for config.toml: the file, not "defaults"', async () => {
    const dir = await tempDir('sb-config-embed-')
    const file = join(dir, 'config.toml')
    const { writeFile } = await import('node:fs/promises')
    await writeFile(file, 'regoin = "de"\n')
    let err: any
    try { resolveConfig([readConfigFile(file)]) } catch (e) { err = e }
    expect(err?.source).toBe(file)
    expect(err?.message).toMatch(new RegExp(`^${file}: unknown key "regoin"`))
  })

  it('a listen, announce or bootstrap address that is not a multiaddr is a ConfigError at create, naming the key', async () => {
    const listen = await refused({ listen: ['127.0.0.1:4001'] })
    expect(listen.name).toBe('ConfigError')
    expect(listen.key).toBe('listen')
    expect(listen.message).toMatch(/^createSparebandNode\(\) config: listen = \["127\.0\.0\.1:4001"\] is invalid: "127\.0\.0\.1:4001" is not a multiaddr/)
    const announce = await refused({ announce: ['/ip4/203.0.113.9/tcp/x'] })
    expect(announce.name).toBe('ConfigError')
    expect(announce.key).toBe('announce')
    const bootstrap = await refused({ network: { bootstrap: ['bootstrap.example.org:4001'] } })
    expect(bootstrap.name).toBe('ConfigError')
    expect(bootstrap.key).toBe('network.bootstrap')
  })

  it('a bootstrap address without /p2p/<peer id> is refused (libp2p would drop it and the node would run alone)', async () => {
    const err = await refused({ network: { bootstrap: ['/ip4/127.0.0.1/tcp/4001'] } })
    expect(err.name).toBe('ConfigError')
    expect(err.key).toBe('network.bootstrap')
    expect(err.message).toContain('/p2p/')
  })

  it('a configFile that does not exist is an error naming it, not an empty file', async () => {
    const dataDir = await tempDir('sb-config-embed-')
    const missing = join(dataDir, 'typo.toml')
    const err = await refused({ listen: [] }, { configFile: missing })
    expect(err.name).toBe('ConfigError')
    expect(err.source).toBe(missing)
    expect(err.message).toContain(missing)
    expect(existsSync(missing)).toBe(false)
  })
})

describe('node.connect() on a node without the proxy part', () => {
  it('rejects with a ConfigError naming proxy.enabled, not NotStartedError (the node is running)', async () => {
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-config-embed-'),
      config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { enabled: false }, network: { local_testnet: true }, exit: { enabled: false } }
    })
    await node.start()
    try {
      const err = await node.connect('127.0.0.1', 80).catch(e => e)
      expect(node.isRunning).toBe(true)
      expect(err.name).toBe('ConfigError')
      expect(err.key).toBe('proxy.enabled')
      expect(err.message).toContain('proxy.enabled')
    } finally {
      await node.stop()
    }
  })

  it('a setting given as undefined is a setting not given: the default stands', async () => {
    const dataDir = await tempDir('sb-config-embed-')
    const supply: boolean | undefined = undefined
    const node = await createSparebandNode({ dataDir, controlApi: false, config: { listen: [], exit: { enabled: supply, max_tunnels: undefined }, proxy: { enabled: false }, region: undefined } })
    expect(node.config.exit.enabled).toBe(true)
    expect(node.config.exit.max_tunnels).toBeGreaterThan(0)
    expect(node.config.region).toBeUndefined()
    await node.stop()
    // a misspelt key is refused all the same, undefined or not
    const misspelt = await refused({ regoin: undefined, exit: { enabeld: undefined } })
    expect(misspelt.key).toBe('regoin')
    expect(misspelt.message).toMatch(/^createSparebandNode\(\) config: unknown key "regoin", did you mean "region"\? \(allowed here: region, network, listen/)
    const nested = await refused({ exit: { enabeld: undefined } })
    expect(nested.key).toBe('exit.enabeld')
    expect(nested.message).toMatch(/unknown key "exit\.enabeld", did you mean "exit\.enabled"\? \(allowed here: .*\benabled\b/)
  })

  it('a config that is not an object, and numbers JSON cannot write, are named as what they are', async () => {
    const text = await refused('de' as any)
    expect(text.name).toBe('ConfigError')
    expect(text.key).toBe('config')
    expect(text.message).toBe('createSparebandNode() options: config must be an object, not the string "de"')
    // a layer made by other code (resolveConfig is exported) is checked as well
    let layer: any
    try { resolveConfig([{ source: SOURCE, values: ['de'] as any }]) } catch (err) { layer = err }
    expect(layer?.message).toBe(`${SOURCE} must be an object of settings (e.g. { region: 'de', exit: { enabled: false } }), not an array`)
    const none = await refused({ exit: { daily_quota_gb: null } })
    expect(none.message).toBe(`${SOURCE}: exit.daily_quota_gb = null is invalid: expected a number in GB, not null`)
    const nan = await refused({ exit: { capacity_mbps: Number.NaN } })
    expect(nan.key).toBe('exit.capacity_mbps')
    expect(nan.message).toMatch(/exit\.capacity_mbps = NaN is invalid/)
  })

  it('a refused config leaves no data directory behind', async () => {
    const dataDir = join(await tempDir('sb-config-embed-'), 'not-yet')
    const err = await createSparebandNode({ dataDir, config: { exit: { capacity_mbps: '5' } } as any }).catch(e => e)
    expect(err.name).toBe('ConfigError')
    expect(existsSync(dataDir)).toBe(false)
  })
})

describe('createSparebandNode() options beside config', () => {
  const OPTIONS = 'createSparebandNode() options'
  const attempt = async (init: unknown): Promise<any> => createSparebandNode(init as any).then(async node => {
    await node.stop()
    return 'created'
  }, err => err)

  it('a misspelt option is refused before anything is written, with the option it resembles', async () => {
    const dir = await tempDir('sb-config-embed-')
    const home = join(dir, 'home')
    // were it ignored, the node would use the default data directory: point that at a place this test watches
    const before = process.env.SPAREBAND_DATA_DIR
    process.env.SPAREBAND_DATA_DIR = home
    try {
      const err = await attempt({ datadir: join(dir, 'data'), config: { listen: [] } })
      expect(err.name).toBe('ConfigError')
      expect(err.source).toBe(OPTIONS)
      expect(err.key).toBe('datadir')
      expect(err.message).toBe(`${OPTIONS}: unknown option "datadir" (did you mean "dataDir"? allowed: dataDir, config, configFile, resolvedConfig, createIdentity, controlApi)`)
      expect(existsSync(home)).toBe(false)
      expect(existsSync(join(dir, 'data'))).toBe(false)
      const api = await attempt({ dataDir: join(dir, 'data'), controlAPI: false })
      expect(api.key).toBe('controlAPI')
      expect(api.message).toContain('did you mean "controlApi"?')
    } finally {
      if (before == null) delete process.env.SPAREBAND_DATA_DIR
      else process.env.SPAREBAND_DATA_DIR = before
    }
  })

  it('a setting given beside config is pointed into it; options of the wrong type are named', async () => {
    const dir = await tempDir('sb-config-embed-')
    const region = await attempt({ dataDir: dir, region: 'de' })
    expect(region.message).toContain('unknown option "region" (settings go inside config: { config: { region: ... } }; ')
    const dataDir = await attempt({ dataDir: 42 })
    expect(dataDir.name).toBe('ConfigError')
    expect(dataDir.key).toBe('dataDir')
    expect(dataDir.message).toBe(`${OPTIONS}: dataDir must be a string, not number 42`)
    const api = await attempt({ dataDir: dir, controlApi: 'no' })
    expect(api.message).toBe(`${OPTIONS}: controlApi must be a boolean, not the string "no"`)
    const notObject = await attempt('de')
    expect(notObject.message).toBe(`${OPTIONS} must be an object such as { dataDir, config }, not the string "de"`)
    // undefined options are options not given
    const node = await createSparebandNode({ dataDir: dir, controlApi: false, configFile: undefined, config: { listen: [], proxy: { enabled: false } } })
    expect(node.dataDir).toBe(dir)
    await node.stop()
  })

  it('createIdentity: false on a data directory that does not exist is refused, and leaves none behind', async () => {
    const dataDir = join(await tempDir('sb-config-embed-'), 'not-yet', 'deeper')
    const err = await createSparebandNode({ dataDir, createIdentity: false }).catch(e => e)
    expect(err.name).toBe('IdentityMissingError')
    expect(err.message).toContain(`no identity at ${join(dataDir, 'identity.key')}`)
    expect(existsSync(join(dataDir, '..'))).toBe(false)
  })
})
