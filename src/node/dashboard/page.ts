/**
 * The dashboard's markup and style. Every value on it is filled in by
 * client.js from the API, with textContent: the page itself holds no data
 * and no secret, so it can be served without a token.
 */

export interface PageAssets {
  /** uPlot's IIFE build: defines `window.uPlot`. */
  uplotJs: string
  uplotCss: string
  /** client.js, run as a module after uPlot. */
  clientJs: string
}

// a plain circle in the accent colour: a data: URL, so the browser never asks the API for /favicon.ico (a 401)
const FAVICON = 'data:image/svg+xml,' + encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#2a7ab8"/></svg>')

/**
 * Text inside `<script>` or `<style>` ends at the first `</script` or
 * `</style`, whatever it is in the code; `<\/` means the same as `</` in JS
 * strings and regular expressions, and an escaped `/` is a `/` in CSS.
 */
function inlined (code: string, tag: 'script' | 'style'): string {
  return code.replace(new RegExp(`</(${tag})`, 'gi'), '<\\/$1')
}

const STYLE = `
:root { color-scheme: light dark; --bg: #f5f6f8; --card: #fff; --fg: #1d2330; --muted: #667085; --line: #dde1e7;
  --accent: #2a7ab8; --ok: #1f8a4c; --warn-bg: #fff4d6; --warn-fg: #7a4b00; --bad: #b42318; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #14171c; --card: #1d2129; --fg: #e6e8ec; --muted: #98a2b3; --line: #313744; --warn-bg: #3d2f0f; --warn-fg: #f5d28a; --bad: #f97066; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; background: var(--bg); color: var(--fg); }
header { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: baseline; padding: 12px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 17px; margin: 0; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; word-break: break-all; }
.muted { color: var(--muted); }
#link { margin-left: auto; }
#link.down { color: var(--bad); font-weight: 600; }
#board.stale .card { opacity: 0.45; }
#stale-note { position: sticky; top: 0; z-index: 1; margin: 0; padding: 6px 0; background: var(--bg); }
main { padding: 16px 20px; display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); max-width: 1400px; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 0 0 8px; display: flex; gap: 8px; align-items: center; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 12px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; min-width: 0; }
ul.plain { list-style: none; margin: 0; padding: 0; }
#warnings { margin: 16px 20px 0; padding: 10px 16px 10px 34px; background: var(--warn-bg); color: var(--warn-fg); border: 1px solid currentColor; border-radius: 8px; font-weight: 600; }
#warnings[hidden] { display: none; }
.badge { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px; border: 1px solid currentColor; }
.badge.ok { color: var(--ok); }
.badge.off { color: var(--muted); }
.badge.bad { color: var(--bad); }
button { font: inherit; padding: 3px 14px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
button:disabled { opacity: .6; cursor: default; }
#exit-toggle { margin-left: auto; }
.error { color: var(--bad); }
meter { width: 140px; vertical-align: middle; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 10px 4px 0; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.num, th.num { text-align: right; }
.table-wrap { overflow-x: auto; }
#chart-now { display: flex; gap: 20px; margin-bottom: 6px; }
#login { max-width: 520px; margin: 48px auto; }
#login form { display: flex; gap: 8px; margin: 10px 0; }
#login input { flex: 1; font: inherit; padding: 4px 8px; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--fg); }
[hidden] { display: none !important; }
`

const BODY = `
<header>
  <h1>spareband</h1>
  <span id="node-peer-id" class="mono"></span>
  <span id="node-region-head" class="muted"></span>
  <span id="link" class="muted" role="status">connecting…</span>
</header>

<section id="login" class="card" hidden>
  <h2>API token</h2>
  <p>This page reads the node's control API, which needs its token: the file <span class="mono">api-token</span>
    in the node's data directory (<span class="mono">~/.spareband/api-token</span> by default).
    <span class="mono">spareband dashboard</span> opens the page with it.</p>
  <form id="login-form" autocomplete="off">
    <input id="login-token" type="password" autocomplete="off" aria-label="API token" placeholder="paste the token" required>
    <button type="submit">Open</button>
  </form>
  <p id="login-message" class="error" role="alert"></p>
</section>

<ul id="warnings" role="alert" hidden></ul>

<main id="board" hidden>
  <p id="stale-note" class="error" role="alert" hidden></p>
  <section class="card">
    <h2>Node</h2>
    <dl>
      <dt>region</dt><dd id="node-region"></dd>
      <dt>network</dt><dd id="node-network"></dd>
      <dt>version</dt><dd id="node-version"></dd>
      <dt>uptime</dt><dd id="node-uptime"></dd>
      <dt>connections</dt><dd id="node-connections"></dd>
      <dt>peers</dt><dd id="node-peers"></dd>
      <dt>DHT</dt><dd id="node-dht"></dd>
      <dt>relay for others</dt><dd id="node-relay"></dd>
      <dt>addresses</dt><dd><ul id="node-addresses" class="plain mono"></ul></dd>
    </dl>
  </section>

  <section class="card" id="exit">
    <h2>Exit <span id="exit-state" class="badge"></span><button id="exit-toggle" type="button" hidden></button></h2>
    <p id="exit-off" class="muted" hidden>This node is not an exit (started with --no-supply, or exit.enabled = false).</p>
    <p id="exit-action-message" class="error" role="alert"></p>
    <dl id="exit-details">
      <dt>policy</dt><dd id="exit-policy"></dd>
      <dt>bytes in</dt><dd id="exit-bytes-in"></dd>
      <dt>bytes out</dt><dd id="exit-bytes-out"></dd>
      <dt>tunnels</dt><dd id="exit-tunnels"></dd>
      <dt>denied</dt><dd id="exit-denied"></dd>
      <dt>today</dt><dd><span id="exit-quota-day"></span> <meter id="exit-quota-day-meter" hidden></meter></dd>
      <dt>this month</dt><dd><span id="exit-quota-month"></span> <meter id="exit-quota-month-meter" hidden></meter></dd>
      <dt>schedule</dt><dd id="exit-schedule"></dd>
      <dt>rate caps</dt><dd id="exit-caps"></dd>
      <dt>reputation</dt><dd id="exit-reputation"></dd>
    </dl>
  </section>

  <section class="card" id="proxy">
    <h2>Proxy</h2>
    <p id="proxy-off" class="muted" hidden>The local proxies are off (proxy.enabled = false).</p>
    <dl id="proxy-details">
      <dt>SOCKS5 port</dt><dd id="proxy-socks-port"></dd>
      <dt>HTTP port</dt><dd id="proxy-http-port"></dd>
      <dt>bytes in</dt><dd id="proxy-bytes-in"></dd>
      <dt>bytes out</dt><dd id="proxy-bytes-out"></dd>
      <dt>tunnels</dt><dd id="proxy-tunnels"></dd>
      <dt>failed</dt><dd id="proxy-failed"></dd>
      <dt title="opened, then ended by a reset at either end, the exit lost, or an idle timeout">cut short</dt><dd id="proxy-broken"></dd>
    </dl>
  </section>

  <section class="card" id="credits">
    <h2>Credits</h2>
    <p id="credits-off" class="muted" hidden>Accounting is off (accounting.enabled = false).</p>
    <dl id="credits-details">
      <dt>balance</dt><dd id="credits-balance"></dd>
      <dt>earned</dt><dd id="credits-earned"></dd>
      <dt>unpaid</dt><dd id="credits-unpaid"></dd>
      <dt>spent</dt><dd id="credits-spent"></dd>
      <dt>allowance</dt><dd id="credits-allowance"></dd>
      <dt>not yet signed</dt><dd id="credits-pending"></dd>
      <dt>held for unsigned bytes</dt><dd id="credits-holds"></dd>
      <dt>forgiven</dt><dd id="credits-forgiven"></dd>
      <dt>receipts</dt><dd id="credits-receipts"></dd>
    </dl>
  </section>

  <section class="card wide">
    <h2>Throughput <span class="muted">(last 5 minutes, bytes in + out per second)</span></h2>
    <div id="chart-now"><span>exit <b id="rate-exit">—</b></span><span>proxy <b id="rate-proxy">—</b></span></div>
    <div id="chart"></div>
  </section>

  <section class="card wide">
    <h2>Newest receipts</h2>
    <p id="receipts-empty" class="muted" hidden></p>
    <div class="table-wrap">
      <table id="receipts-table" hidden>
        <thead><tr><th>updated</th><th>role</th><th>peer</th><th class="num">up</th><th class="num">down</th><th class="num">cost</th><th>source</th></tr></thead>
        <tbody id="receipts"></tbody>
      </table>
    </div>
  </section>
</main>
`

/** The page for one answer: `nonce` goes on every inline tag, and nowhere else. */
export function renderPage (assets: PageAssets, nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>spareband</title>
<link rel="icon" href="${FAVICON}">
<style nonce="${nonce}">${inlined(assets.uplotCss, 'style')}</style>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
${BODY}
<script nonce="${nonce}">${inlined(assets.uplotJs, 'script')}</script>
<script type="module" nonce="${nonce}">${inlined(assets.clientJs, 'script')}</script>
</body>
</html>
`
}
