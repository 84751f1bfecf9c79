import { describe, it, expect, beforeAll } from 'vitest'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, join, normalize, resolve } from 'node:path'

/**
 * The package an embedding app installs (`npm pack` of the built tree):
 * what it imports must be declared or shipped, and it must say which Node
 * it runs on. Runs on dist/, like the other e2e files.
 */
const ROOT = resolve(import.meta.dirname, '../..')
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))

let files: Set<string>

beforeAll(() => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  files = new Set(JSON.parse(out)[0].files.map((f: { path: string }) => f.path))
})

/** Module specifiers of a .js or .d.ts file's own import/export statements (not the ones in its comments' examples). */
function specifiers (text: string): string[] {
  const found: string[] = []
  // `import x from 'y'`, `export { x } from 'y'` (over several lines too), `import 'y'`
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm)) found.push(m[1])
  for (const m of text.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)) found.push(m[1])
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push(m[1])
  return found
}

const packageName = (spec: string): string => spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]

describe('the published package', () => {
  it('ships the licence text its package.json names (MIT)', () => {
    expect(pkg.license).toBe('MIT')
    expect(files.has('LICENSE')).toBe(true)
    expect(readFileSync(join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n/)
  })

  it('imports, in code and in types, only packages it declares as dependencies, and files it ships', () => {
    const deps = new Set(Object.keys(pkg.dependencies))
    const builtins = new Set(builtinModules)
    const undeclared: string[] = []
    const missing: string[] = []
    for (const file of files) {
      if (!/\.(js|d\.ts)$/.test(file)) continue
      for (const spec of specifiers(readFileSync(join(ROOT, file), 'utf8'))) {
        if (spec.startsWith('.')) {
          // a .d.ts may name a sibling by its source's .ts; the compiler reads the .d.ts
          const target = normalize(join(dirname(file), spec)).replace(/\.ts$/, file.endsWith('.d.ts') ? '.d.ts' : '.js')
          if (!files.has(target)) missing.push(`${file} -> ${spec}`)
        } else if (!spec.startsWith('node:') && !builtins.has(spec) && !deps.has(packageName(spec))) {
          undeclared.push(`${file} -> ${spec}`)
        }
      }
    }
    // under a strict installer (pnpm) an undeclared package is not there, and the types stop compiling
    expect(undeclared).toEqual([])
    expect(missing).toEqual([])
  })

  it('its source maps carry their sources (src/ is not shipped)', () => {
    const broken: string[] = []
    for (const file of files) {
      if (!file.endsWith('.js.map')) continue
      const map = JSON.parse(readFileSync(join(ROOT, file), 'utf8'))
      map.sources.forEach((source: string, i: number) => {
        if (map.sourcesContent?.[i] == null && !files.has(normalize(join(dirname(file), map.sourceRoot ?? '', source)))) broken.push(`${file}: ${source}`)
      })
    }
    expect(broken.slice(0, 3)).toEqual([])
  })

  it('asks for a Node that has what it uses: node:sqlite without a flag, and StatementSync.iterate (22.13.0)', () => {
    // 22.12.0 has node:sqlite only behind --experimental-sqlite: importing the package fails with ERR_UNKNOWN_BUILTIN_MODULE
    const min = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(pkg.engines.node)
    expect(min, `engines.node ${pkg.engines.node}`).not.toBeNull()
    const [major, minor, patch] = [1, 2, 3].map(i => Number(min![i] ?? 0))
    expect(major * 1e6 + minor * 1e3 + patch).toBeGreaterThanOrEqual(22_013_000)
  })
})
