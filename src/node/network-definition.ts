/**
 * Network definitions: one JSON file an operator publishes so everyone joins
 * the same network (name, DHT protocol, bootstrap peers, gossip topics).
 * `--network NAME` loads `networks/NAME.json` shipped with spareband;
 * anything with a slash or a `.json` suffix is read as a file path.
 */

import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { z } from 'zod'
import { ConfigError, describeFsError } from '../errors.ts'
import { valueProblem } from './config.ts'
import type { ConfigLayer } from './config.ts'

export const networkDefinitionSchema = z.strictObject({
  name: z.string().min(1),
  dht_protocol: z.string().regex(/^\/[\w./-]+$/, 'must look like a protocol id, e.g. "/spareband/kad/1.0.0"'),
  bootstrap: z.array(z.string()).default([]),
  topics: z.strictObject({
    receipts: z.string().min(1),
    reputation: z.string().min(1)
  }).optional(),
  /** Only for networks on one machine: private addresses, no IP colocation penalty. */
  local_testnet: z.boolean().optional()
})

export type NetworkDefinition = z.infer<typeof networkDefinitionSchema>

/** `networks/` in the package root, whether we run from `src/` or `dist/src/`. */
export function shippedNetworksDir (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'networks')
    if (existsSync(join(candidate, 'spareband.json'))) return candidate
    dir = dirname(dir)
  }
  throw new Error('cannot find the networks/ directory shipped with spareband')
}

/** The names `--network` takes for the networks shipped in networks/. */
function shippedNetworkNames (): string[] {
  return readdirSync(shippedNetworksDir()).filter(f => f.endsWith('.json')).map(f => f.slice(0, -'.json'.length)).sort()
}

export function loadNetworkDefinition (nameOrFile: string, source = '--network'): { file: string, definition: NetworkDefinition } {
  // '' would look for networks/.json
  if (nameOrFile === '') throw new ConfigError(`${source} is empty: name a network shipped in networks/ (${shippedNetworkNames().join(', ')}) or a network definition file`, { source, key: 'network' })
  const isFile = nameOrFile.includes('/') || nameOrFile.endsWith('.json')
  const file = isFile ? nameOrFile : join(shippedNetworksDir(), `${nameOrFile}.json`)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err: any) {
    if (err.code === 'ENOENT' && !isFile) {
      throw new ConfigError(`unknown network "${nameOrFile}": no ${file}; pass a network name shipped in networks/ or a path to a .json file`, { source: 'flag --network', key: 'network' })
    }
    if (err.code === 'ENOENT') throw new ConfigError(`${file}: no such network definition file (named by ${source})`, { source: file, key: 'network' })
    throw new ConfigError(`${file}: cannot read network definition (named by ${source}): ${describeFsError(err)}`, { source: file, key: 'network' })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err: any) {
    throw new ConfigError(`${file}: not valid JSON: ${err.message}`, { source: file, key: 'network' })
  }
  const result = networkDefinitionSchema.safeParse(json)
  if (!result.success) {
    const issue = result.error.issues[0]
    const key = issue.path.join('.')
    if (issue.code === 'unrecognized_keys') {
      // where it is: the top level, or a section such as topics
      let schema: any = networkDefinitionSchema
      for (const p of issue.path) schema = schema?.shape?.[p as string]?.unwrap?.() ?? schema?.shape?.[p as string]
      const names = issue.keys.map(k => [...issue.path.map(String), k].join('.'))
      throw new ConfigError(`${file}: unknown key ${names.map(k => `"${k}"`).join(', ')} in a network definition (allowed${key === '' ? '' : ` in ${key}`}: ${Object.keys(schema?.shape ?? {}).join(', ')})`, { source: file, key: names[0] })
    }
    let value: unknown = json
    for (const p of issue.path) value = (value as any)?.[p as any]
    const what = key === '' ? 'the network definition' : `"${key}"`
    throw new ConfigError(`${file}: ${what} is ${value === undefined ? 'missing' : 'invalid'}: ${valueProblem(issue, key, value)}`, { source: file, key })
  }
  return { file, definition: result.data }
}

/** A network definition as a config layer (below environment and flags). */
export function networkLayer (file: string, def: NetworkDefinition): ConfigLayer {
  return {
    source: file,
    values: {
      network: {
        name: def.name,
        dht_protocol: def.dht_protocol,
        bootstrap: def.bootstrap,
        ...(def.topics != null ? { receipts_topic: def.topics.receipts, reputation_topic: def.topics.reputation } : {}),
        ...(def.local_testnet != null ? { local_testnet: def.local_testnet } : {})
      }
    }
  }
}
