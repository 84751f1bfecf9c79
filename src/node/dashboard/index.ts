/**
 * The operator dashboard at `/` of the control API: one self-contained page
 * (markup, style, uPlot and client.js inlined), so it loads nothing from
 * anywhere and its Content-Security-Policy can forbid every other origin.
 *
 * client.js is plain JavaScript, type-checked by tsc (`// @ts-check`) and
 * copied by it to dist/ beside this file, so the page is the same whether
 * the node runs from dist/ or from source.
 */

import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { renderPage } from './page.ts'
import type { PageAssets } from './page.ts'

const require = createRequire(import.meta.url)

let assets: Promise<PageAssets> | undefined

/** Read at the first request, then kept: about 60 kB that never change while the node runs. */
async function loadAssets (): Promise<PageAssets> {
  const [uplotJs, uplotCss, clientJs] = await Promise.all([
    readFile(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    readFile(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
    readFile(new URL('./client.js', import.meta.url), 'utf8')
  ])
  // tsc's link to client.js.map, which the API does not serve
  return { uplotJs, uplotCss, clientJs: clientJs.replace(/^\/\/# sourceMappingURL=.*$/m, '') }
}

/** The page for one answer, its inline tags carrying `nonce` (see ControlApiInit.dashboard). */
export async function renderDashboard (nonce: string): Promise<string> {
  assets ??= loadAssets().catch(err => {
    // a failed read (a file missing from an install) is tried again at the next request
    assets = undefined
    throw err
  })
  return renderPage(await assets, nonce)
}
