import { writeFile, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { callApi, nodeOf } from '../api-client.ts'
import { desktopOpener, openWith } from '../open-browser.ts'
import type { Command } from 'commander'

/**
 * A page in the data directory that sends the browser on to the dashboard
 * with the token: the opener and the browser get this file's path on their
 * command lines, which any local user can read (ps), never the token. It
 * holds what api-token beside it holds, with the same mode.
 */
export const OPENER_PAGE_FILE = 'dashboard.html'

/** The dashboard's URL with the token in the fragment, which the browser keeps to itself and the page reads. */
export function dashboardUrl (apiUrl: string, token: string): string {
  return `${apiUrl}/#token=${encodeURIComponent(token)}`
}

async function writeOpenerPage (dataDir: string, url: string): Promise<string> {
  const file = join(dataDir, OPENER_PAGE_FILE)
  const href = url.replaceAll('&', '&amp;').replaceAll('"', '&quot;')
  await writeFile(file, `<!doctype html>\n<meta charset="utf-8">\n<meta name="referrer" content="no-referrer">\n<meta http-equiv="refresh" content="0;url=${href}">\n<title>spareband dashboard</title>\n<p><a href="${href}">Open the spareband dashboard</a></p>\n`, { mode: 0o600 })
  await chmod(file, 0o600)
  return file
}

export function registerDashboard (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('dashboard')
    .description('open the running node\'s dashboard in the browser')
    .option('--print', 'only print its URL, with the API token in the fragment')
    .action(async (opts, cmd: Command) => {
      const dataDir = dataDirOf(cmd)
      // a node that died leaves api.json behind: it must be "no node runs", not a URL that leads nowhere
      await callApi(dataDir, '/v1/status')
      const { info, token } = await nodeOf(dataDir)
      const url = dashboardUrl(info.url, token)
      if (opts.print === true) {
        process.stdout.write(url + '\n')
        return
      }
      const opener = desktopOpener()
      const result = 'reason' in opener ? { opened: false as const, reason: opener.reason } : await openWith(opener, await writeOpenerPage(dataDir, url))
      if (result.opened) {
        // the opener says nothing of a browser that cannot read the page: a snap-packaged one
        // (Ubuntu's default) may not read hidden folders such as ~/.spareband
        process.stdout.write(`opened the dashboard of ${info.peerId} (${info.url}/) in the browser\n` +
          'if the browser cannot open the page, "spareband dashboard --print" gives the address to paste\n')
        return
      }
      process.stdout.write(url + '\n')
      process.stderr.write(`spareband: could not open a browser: ${result.reason}. Open the URL above in a browser on this machine, or on another one after "ssh -L ${info.port}:${info.host}:${info.port} <this machine>"\n`)
    })
}
