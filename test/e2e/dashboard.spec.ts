import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { startTargetServer } from '../utils/target-server.ts'
import { curl, exitAndConsumer, spawnNode } from '../utils/network.ts'
import { runCli, tempDir, waitFor } from '../utils/cli.ts'
import { callApi } from '../../src/cli/api-client.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { countersigned, parties } from '../accounting/fixtures.ts'
import type { Browser, Page } from 'playwright-core'
import type { SpawnedNode } from '../utils/network.ts'
import type { TargetServer } from '../utils/target-server.ts'

const MiB = 1024 * 1024
// Debian's package; .ci/run installs it
const CHROMIUM = '/usr/bin/chromium'
const haveChromium = existsSync(CHROMIUM)
if (!haveChromium) console.warn(`dashboard e2e: SKIPPED, ${CHROMIUM} is missing (apt-get install chromium)`)

/** The exit series' stroke in client.js. */
const EXIT_STROKE = [0xe0, 0x7b, 0x24]

interface WatchedPage {
  page: Page
  /** Console errors and warnings, uncaught exceptions and CSP violations, as they came. */
  problems: string[]
}

/**
 * A real exit (allowed to reach the local target server) and a consumer,
 * both `spareband start` processes; the dashboard of the exit in Debian's
 * Chromium, traffic by curl through the consumer's HTTP proxy.
 */
describe.skipIf(!haveChromium)(`the operator dashboard in a real browser (skipped when ${CHROMIUM} is missing)`, () => {
  let target: TargetServer
  let exit: SpawnedNode
  let consumer: SpawnedNode
  let browser: Browser
  let apiUrl: string
  let token: string

  beforeAll(async () => {
    target = await startTargetServer(16 * MiB)
    ;({ exit, consumer } = await exitAndConsumer([target.port]))
    apiUrl = JSON.parse(await readFile(join(exit.dataDir, 'api.json'), 'utf8')).url
    token = (await readFile(join(exit.dataDir, 'api-token'), 'utf8')).trim()
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] })
  })
  afterAll(async () => {
    await browser?.close()
    await Promise.all([exit, consumer].filter(n => n != null).map(async n => n.proc.kill()))
    await target?.close()
  })

  /** A fresh browser context (no sessionStorage) on `url`, watched for anything the page complains of. */
  async function open (url: string): Promise<WatchedPage> {
    const context = await browser.newContext()
    const page = await context.newPage()
    const problems: string[] = []
    page.on('console', m => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`) })
    page.on('pageerror', err => problems.push(`page error: ${err.message}`))
    // Chromium logs CSP refusals to the console too; the event also catches those it does not
    await page.exposeFunction('reportCspViolation', (text: string) => problems.push(`CSP violation: ${text}`))
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', e => { void (window as any).reportCspViolation(`${e.violatedDirective} ${e.blockedURI}`) })
    })
    await page.goto(url)
    return { page, problems }
  }

  const text = async (page: Page, selector: string): Promise<string> => (await page.locator(selector).textContent()) ?? ''
  const value = async (page: Page, selector: string): Promise<string | null> => page.locator(selector).getAttribute('data-value')
  /** Rows of the chart's canvas that the exit series' colour reaches: 1 or 2 for a flat line, many for a rise. */
  const exitStrokeRows = async (page: Page): Promise<number> => page.locator('#chart canvas').evaluate((canvas: HTMLCanvasElement, [r0, g0, b0]) => {
    const { data, width, height } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height)
    const ys = new Set<number>()
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = 4 * (y * width + x)
        if (Math.abs(data[i] - r0) < 16 && Math.abs(data[i + 1] - g0) < 16 && Math.abs(data[i + 2] - b0) < 16 && data[i + 3] > 200) ys.add(y)
      }
    }
    return ys.size
  }, EXIT_STROKE)
  const viaProxy = ['--proxy', `http://127.0.0.1:PORT`, '--proxy-user', 'region-de:']
  const through = (path: string, extra: string[] = []): string[] => [...viaProxy.map(a => a.replace('PORT', String(consumer.httpPort))), ...extra, `http://127.0.0.1:${target.port}${path}`]

  it('`spareband dashboard --print` gives a URL that opens the exit\'s page: identity, warnings, bytes as the API counts them, a drawn chart, receipts', async () => {
    const printed = await runCli(['dashboard', '--print', '--data-dir', exit.dataDir])
    expect(printed.code, printed.stderr).toBe(0)
    expect(printed.stdout).toBe(`${apiUrl}/#token=${token}\n`)

    const { page, problems } = await open(printed.stdout.trim())
    await expect.poll(() => text(page, '#node-peer-id')).toBe(exit.peerId)
    // the token left the address bar (and so history) at once
    expect(page.url()).toBe(`${apiUrl}/`)
    expect(await page.locator('#login').isVisible()).toBe(false)
    expect(await text(page, '#warnings')).toContain('exit.allow_private_targets is ON')
    expect(await text(page, '#node-region')).toBe('de')
    // a local testnet: the relay always runs
    expect(await text(page, '#node-relay')).toMatch(/^on, \d+ reservation\(s\), \d+ circuit\(s\)$/)
    // the DHT as status has it: a server in a local testnet, holding at least its own ad; nothing dropped
    const dht = (await callApi<any>(exit.dataDir, '/v1/status')).dht
    expect(dht.stored.records).toBeGreaterThanOrEqual(1)
    expect(await text(page, '#node-dht')).toMatch(/^server, \d+ peers in the routing table; holds \d+ record\(s\), \d+ provider entr(y|ies)$/)
    expect(await text(page, '#exit-state')).toBe('sharing')
    expect(await text(page, '#exit-reputation')).toBe('no consumer has reported on this exit yet')
    // the schedule as configured, not only whether it is open
    expect(await text(page, '#exit-schedule')).toBe('always: sharing now')
    expect(await text(page, '#credits-holds')).toMatch(/^\d+ times?$/)
    expect(await text(page, '#credits-forgiven')).toMatch(/^\d+(\.\d+)? [kMG]?B carried, never signed for$/)

    // 16 MiB at about 6 MB/s: a few 2-second samples of the chart see it
    const r = await curl(through('/drip'))
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.length).toBe(16 * MiB)
    await waitFor(async () => (await exit.status()).exit.tunnelsOpen === 0, { what: 'the tunnel to close' })

    // what the page shows is what the API says, to the byte
    let api: any
    await expect.poll(async () => {
      api = (await exit.status()).exit
      return { page: [await value(page, '#exit-bytes-out'), await value(page, '#exit-bytes-in')], api: [String(api.bytesOut), String(api.bytesIn)] }
    }, { timeout: 15_000 }).toSatisfy(({ page, api }: { page: string[], api: string[] }) => page[0] === api[0] && page[1] === api[1])
    expect(api.bytesOut).toBeGreaterThan(16 * MiB)
    expect(await text(page, '#exit-bytes-out')).toBe(`${(api.bytesOut / 1e6).toFixed(1)} MB`)
    expect(await text(page, '#exit-tunnels')).toBe(`0 open, ${api.tunnelsTotal} since start`)

    // the exit's series was drawn, and rose: its colour spans many rows of the canvas, not one flat line at zero
    expect(await exitStrokeRows(page)).toBeGreaterThan(20)

    // the newest receipts, as the API lists them
    const receipts = await waitFor(async () => {
      const list = await callApi<any[]>(exit.dataDir, '/v1/receipts?limit=20')
      return list.length > 0 && list
    }, { what: 'a receipt at the exit' }) as any[]
    await expect.poll(async () => page.locator('#receipts tr').first().getAttribute('data-session'), { timeout: 15_000 }).toBe(receipts[0].sessionId)
    await expect.poll(async () => {
      const newest = (await callApi<any[]>(exit.dataDir, '/v1/receipts?limit=20'))[0]
      const cells = await page.locator('#receipts tr').first().locator('td').allTextContents()
      return cells[5] === newest.cost && cells[1] === 'carried' && cells[2] === `${consumer.peerId.slice(0, 8)}…${consumer.peerId.slice(-6)}`
    }, { timeout: 15_000 }).toBe(true)
    await expect.poll(async () => value(page, '#credits-earned'), { timeout: 15_000 }).toBe((await callApi(exit.dataDir, '/v1/balance')).earned)

    expect(problems).toEqual([])
  })

  it('asks for the token when there is none, and again after a wrong one', async () => {
    const { page, problems } = await open(`${apiUrl}/`)
    await expect.poll(() => page.locator('#login').isVisible()).toBe(true)
    expect(await page.locator('#board').isVisible()).toBe(false)
    expect(await text(page, '#login-message')).toBe('')

    await page.fill('#login-token', 'not-the-token')
    await page.click('#login button[type=submit]')
    await expect.poll(() => text(page, '#login-message')).toContain('refused this token (401)')
    expect(await page.locator('#board').isVisible()).toBe(false)

    await page.fill('#login-token', token)
    await page.click('#login button[type=submit]')
    await expect.poll(() => text(page, '#node-peer-id')).toBe(exit.peerId)
    expect(await page.locator('#login').isVisible()).toBe(false)
    // kept for this tab: a reload needs no token
    await page.reload()
    await expect.poll(() => text(page, '#node-peer-id')).toBe(exit.peerId)

    // a wrong token in the fragment: the form, with the reason, and the fragment gone
    const wrong = await open(`${apiUrl}/#token=${'0'.repeat(64)}`)
    await expect.poll(() => text(wrong.page, '#login-message')).toContain('refused this token (401)')
    expect(wrong.page.url()).toBe(`${apiUrl}/`)

    // Chromium logs each 401 answer as a failed resource; nothing else may show up
    const unexpected = [...problems, ...wrong.problems].filter(p => !p.includes('status of 401 (Unauthorized)'))
    expect(unexpected).toEqual([])
  })

  it('Pause in the browser pauses the exit (a new tunnel gets 503), Resume undoes it', async () => {
    const { page, problems } = await open(`${apiUrl}/#token=${token}`)
    await expect.poll(() => text(page, '#exit-toggle')).toBe('Pause')

    await page.click('#exit-toggle')
    await expect.poll(async () => (await exit.status()).exit.paused).toBe(true)
    await expect.poll(() => text(page, '#exit-toggle')).toBe('Resume')
    expect(await text(page, '#exit-state')).toBe('paused')
    await expect.poll(() => text(page, '#warnings')).toContain('the exit is paused')
    const refused = await curl(through('/hello', ['-i']))
    expect(refused.stdout.toString()).toMatch(/^HTTP\/1\.1 503/)
    expect(refused.stdout.toString()).toContain('paused')

    await page.click('#exit-toggle')
    await expect.poll(async () => (await exit.status()).exit.paused).toBe(false)
    await expect.poll(() => text(page, '#exit-state')).toBe('sharing')
    const ok = await curl(through('/hello'))
    expect(ok.stdout.toString()).toBe('hello from the target\n')

    // a pause that cannot be saved is a pause all the same: the page says so, and for how long, in one voice
    const blocker = join(exit.dataDir, 'exit-state.json.tmp')
    await mkdir(blocker)
    try {
      await page.click('#exit-toggle')
      await expect.poll(() => text(page, '#exit-action-message')).toMatch(/^paused, but only until the node stops: .*exit-state\.json could not be written/)
      expect(await text(page, '#exit-state')).toBe('paused')
      await expect.poll(() => text(page, '#warnings')).toContain('but only until the node stops')
      expect(await text(page, '#warnings')).not.toContain('across restarts')
      const cli = await runCli(['resume', '--data-dir', exit.dataDir])
      expect(cli.code, cli.stderr).toBe(0)
      expect(cli.stdout).toMatch(/^exit resumed: it takes new tunnels\nonly until the node stops \(a restart goes back to the state last saved\): /)
    } finally {
      await rmdir(blocker)
    }
    // the page learns of the CLI's resume at its next poll
    await expect.poll(() => text(page, '#exit-toggle')).toBe('Pause')
    await page.click('#exit-toggle')
    await expect.poll(async () => (await exit.status()).exit).toMatchObject({ paused: true, stateNotSaved: null })
    await page.click('#exit-toggle')
    await expect.poll(async () => (await exit.status()).exit.paused).toBe(false)

    // Chromium logs the 500 it no longer gets; nothing may show up
    expect(problems).toEqual([])

    // the node hangs: the greyed button takes no key press either (it did, and the exit paused once the node came back)
    process.kill(exit.proc.child.pid!, 'SIGSTOP')
    try {
      await expect.poll(async () => (await page.locator('#board').getAttribute('class')) ?? '', { timeout: 12_000 }).toContain('stale')
      expect(await page.locator('#exit-toggle').isDisabled()).toBe(true)
      await page.locator('#exit-toggle').focus()
      await page.keyboard.press('Enter')
      await page.keyboard.press('Space')
    } finally {
      process.kill(exit.proc.child.pid!, 'SIGCONT')
    }
    await expect.poll(async () => (await page.locator('#board').getAttribute('class')) ?? '', { timeout: 12_000 }).not.toContain('stale')
    expect(await page.locator('#exit-toggle').isDisabled()).toBe(false)
    expect(await text(page, '#exit-toggle')).toBe('Pause')
    expect((await exit.status()).exit.paused).toBe(false)
  })

  it('a node without accounting: the page says so, and does not ask for the receipts it does not keep (each 404 was a console error)', async () => {
    const node = await spawnNode({ region: 'de', config: '[accounting]\nenabled = false\n', args: ['--no-supply'] })
    try {
      const url = JSON.parse(await readFile(join(node.dataDir, 'api.json'), 'utf8')).url as string
      const nodeToken = (await readFile(join(node.dataDir, 'api-token'), 'utf8')).trim()
      const { page, problems } = await open(`${url}/#token=${nodeToken}`)
      await expect.poll(() => text(page, '#receipts-empty')).toBe('Accounting is off: this node keeps no receipts.')
      // the proxy's tunnels cut short are on the page, beside those that failed
      expect(await text(page, '#proxy-broken')).toBe('0')
      // three more polls
      await new Promise(resolve => setTimeout(resolve, 6500))
      expect(problems).toEqual([])
    } finally {
      await node.proc.kill()
    }
  })

  it('`spareband dashboard` hands the desktop a page in the data directory, not the token, and that page leads to the dashboard', async () => {
    // stands in for the desktop's xdg-open, which has no session to open a window in here: it notes what it was asked to open
    const bin = await tempDir('sb-dash-bin-')
    const asked = join(bin, 'asked')
    await writeFile(join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s\\n' "$@" > '${asked}'\n`)
    await chmod(join(bin, 'xdg-open'), 0o755)
    const r = await runCli(['dashboard', '--data-dir', exit.dataDir], { env: { PATH: `${bin}:${process.env.PATH}`, DISPLAY: ':99' } })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe(`opened the dashboard of ${exit.peerId} (${apiUrl}/) in the browser\nif the browser cannot open the page, "spareband dashboard --print" gives the address to paste\n`)
    const file = (await readFile(asked, 'utf8')).trim()
    expect(file).toBe(join(exit.dataDir, 'dashboard.html'))
    expect(file).not.toContain(token)

    const { page, problems } = await open(`file://${file}`)
    await expect.poll(() => text(page, '#node-peer-id')).toBe(exit.peerId)
    expect(page.url()).toBe(`${apiUrl}/`)
    expect(problems).toEqual([])

    // no desktop: the URL to copy, and why
    const headless = await runCli(['dashboard', '--data-dir', exit.dataDir], { env: { PATH: `${bin}:${process.env.PATH}`, DISPLAY: '', WAYLAND_DISPLAY: '' } })
    expect(headless.code).toBe(0)
    expect(headless.stdout).toBe(`${apiUrl}/#token=${token}\n`)
    expect(headless.stderr).toContain('no graphical session')
  })

  it('a receipt another node gossiped, with markup for a session id, reaches the page as data and runs nothing', async () => {
    // session ids are the consumer's choice, 128 characters of anything but control characters, and gossip
    // brings in third parties' receipts: written into the running exit's ledger as its gossip validator does
    const [a, b] = await parties(2)
    const markup = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    const now = BigInt(Date.now())
    const ledger = Ledger.open(join(exit.dataDir, 'ledger.db'))
    try {
      expect(await ledger.recordReceipt(await countersigned(a, b, { sessionId: markup, startedAt: now - 1000n, updatedAt: now }), 'gossip')).toBe('inserted')
    } finally {
      ledger.close()
    }
    const listed = await callApi<any[]>(exit.dataDir, '/v1/receipts?limit=1')
    expect(listed[0].sessionId).toBe(markup)

    const { page, problems } = await open(`${apiUrl}/#token=${token}`)
    await expect.poll(async () => page.locator('#receipts tr').first().getAttribute('data-session'), { timeout: 15_000 }).toBe(markup)
    expect(await page.locator('img, script:not([nonce])').count()).toBe(0)
    expect(await page.evaluate(() => (window as any).__pwned)).toBeUndefined()
    expect(await page.locator('#receipts tr').first().locator('td').nth(1).textContent()).toBe('seen')
    expect(problems).toEqual([])
  })

  it('a page opened after the traffic still charts it: the chart starts from the node\'s last five minutes', async () => {
    const history = await callApi<{ intervalMs: number, samples: Array<[number, number | null, number | null]> }>(exit.dataDir, '/v1/throughput')
    expect(history.intervalMs).toBe(2000)
    // the first test's 16 MiB went through within these five minutes; the exit's total rose by at least that
    const exitTotals = history.samples.map(s => s[1]!)
    expect(exitTotals.at(-1)! - exitTotals[0]).toBeGreaterThan(16 * MiB)
    expect(history.samples.every(([at], i) => i === 0 || at > history.samples[i - 1][0])).toBe(true)
    // nothing flows now: live samples alone would draw a flat line at zero
    expect((await exit.status()).exit.tunnelsOpen).toBe(0)

    const { page, problems } = await open(`${apiUrl}/#token=${token}`)
    await expect.poll(() => text(page, '#node-peer-id')).toBe(exit.peerId)
    await expect.poll(async () => exitStrokeRows(page), { timeout: 5000 }).toBeGreaterThan(20)
    expect(problems).toEqual([])
  })

  it('a browser whose clock is 90 s behind the node\'s still shows the live rate (the chart runs on the node\'s clock)', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.clock.install({ time: Date.now() - 90_000 })
    await page.goto(`${apiUrl}/#token=${token}`)
    await expect.poll(() => text(page, '#node-peer-id')).toBe(exit.peerId)
    // 16 MiB at about 6 MB/s, a few 2-second samples long: the rate is a figure while it flows
    const rates: string[] = []
    const download = curl(through('/drip'))
    const sampling = (async () => {
      for (let i = 0; i < 12; i++) {
        rates.push(await text(page, '#rate-exit'))
        await new Promise(resolve => setTimeout(resolve, 500))
      }
    })()
    const [r] = await Promise.all([download, sampling])
    expect(r.stdout.length).toBe(16 * MiB)
    expect(rates.filter(x => /^[\d.]+ [kMG]?B\/s$/.test(x) && !/^0 /.test(x)).length, rates.join(' | ')).toBeGreaterThan(0)
    await context.close()
  })

  it('a node that stops answering: its figures are greyed and said to be old; credits carry their unit', async () => {
    // the consumer's page: it is stopped at the end of this test (the others are done with it)
    const consumerApi = JSON.parse(await readFile(join(consumer.dataDir, 'api.json'), 'utf8')).url as string
    const consumerToken = (await readFile(join(consumer.dataDir, 'api-token'), 'utf8')).trim()
    const { page } = await open(`${consumerApi}/#token=${consumerToken}`)
    await expect.poll(() => text(page, '#credits-allowance')).toMatch(/^\d+(\.\d+)? credits$/)
    expect(await text(page, '#credits-spent')).toMatch(/^\d+(\.\d+)? credits for .+ used$/)
    expect(await page.locator('#board').getAttribute('class') ?? '').not.toContain('stale')
    expect(await page.locator('#stale-note').isHidden()).toBe(true)

    // a node that hangs keeps its connections open: the page must not go on saying "live"
    process.kill(consumer.proc.child.pid!, 'SIGSTOP')
    try {
      await expect.poll(async () => (await page.locator('#board').getAttribute('class')) ?? '', { timeout: 12_000 }).toContain('stale')
      expect(await text(page, '#link')).toMatch(/^the node is not answering \(since .+\); retrying$/)
    } finally {
      process.kill(consumer.proc.child.pid!, 'SIGCONT')
    }
    await expect.poll(async () => (await page.locator('#board').getAttribute('class')) ?? '', { timeout: 12_000 }).not.toContain('stale')
    expect(await text(page, '#link')).toMatch(/^live · /)

    await consumer.proc.kill()
    await expect.poll(async () => (await page.locator('#board').getAttribute('class')) ?? '', { timeout: 10_000 }).toContain('stale')
    expect(await page.locator('#stale-note').isVisible()).toBe(true)
    expect(await text(page, '#stale-note')).toMatch(/^the node is not answering since .+: the figures below are from before then$/)
  })

  it('`spareband dashboard` says no node runs when none does; `spareband status` names the dashboard', async () => {
    const empty = await tempDir('sb-dash-none-')
    const r = await runCli(['dashboard', '--print', '--data-dir', empty])
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    // nothing there, not even an identity: init first
    expect(r.stderr).toBe(`spareband: no running node found for ${empty} (no api.json); it has no identity.key: create one with "spareband init --data-dir ${empty}", then start a node with "spareband start --data-dir ${empty}"\n`)

    const status = await runCli(['status', '--data-dir', exit.dataDir])
    expect(status.stdout).toMatch(new RegExp(`^dashboard +${apiUrl.replaceAll('.', '\\.')}/ \\(spareband dashboard opens it\\)$`, 'm'))
    expect(status.stdout).not.toContain(token)
  })
})
