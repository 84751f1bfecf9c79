/**
 * Checks the options object given to createSparebandNode(): the config
 * inside it is checked key by key (config.ts), but a misspelt option beside
 * it (`datadir`, `controlAPI`) was ignored, and a node then opened the
 * default data directory (~/.spareband) or served the control API that the
 * app meant to turn off. TypeScript catches that only for object literals.
 */

import { ConfigError } from '../errors.ts'
import { configSchema } from './config.ts'

const SOURCE = 'createSparebandNode() options'

/** Each option and the type of value it takes (undefined always means "not given"). */
const OPTIONS: Record<string, 'string' | 'boolean' | 'object'> = {
  dataDir: 'string',
  config: 'object',
  configFile: 'string',
  resolvedConfig: 'object',
  createIdentity: 'boolean',
  controlApi: 'boolean'
}

export function checkNodeInit (init: unknown): void {
  if (init === undefined) return
  if (init === null || typeof init !== 'object' || Array.isArray(init)) {
    throw new ConfigError(`${SOURCE} must be an object such as { dataDir, config }, not ${describe(init)}`, { source: SOURCE })
  }
  for (const [key, value] of Object.entries(init)) {
    const wanted = OPTIONS[key]
    if (wanted == null) {
      const near = Object.keys(OPTIONS).find(k => k.toLowerCase() === key.toLowerCase())
      const hint = near != null ? `did you mean "${near}"? ` : key in configSchema.shape ? `settings go inside config: { config: { ${key}: ... } }; ` : ''
      throw new ConfigError(`${SOURCE}: unknown option "${key}" (${hint}allowed: ${Object.keys(OPTIONS).join(', ')})`, { source: SOURCE, key })
    }
    if (value === undefined) continue
    const ok = wanted === 'object' ? value !== null && typeof value === 'object' && !Array.isArray(value) : typeof value === wanted
    if (!ok) throw new ConfigError(`${SOURCE}: ${key} must be ${wanted === 'object' ? 'an object' : `a ${wanted}`}, not ${describe(value)}`, { source: SOURCE, key })
  }
}

function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`
  return `a ${typeof value}`
}
