// @ts-check
/**
 * The dashboard's script, run in the operator's browser. It polls the
 * control API with the token the operator gave (in the URL fragment, which
 * the browser never sends, or in the form) and fills the page in. Every
 * value goes in with textContent: peer ids, addresses and warnings come
 * from the network and from config files, and must never become markup.
 */

/** @typedef {Record<string, any>} Json */
/** @import uPlot from 'uplot' */

const POLL_MS = 2000
/**
 * How long a call to the node may take. A node that hangs (stopped, or its
 * event loop stuck) keeps the connection open, and without a limit the page
 * said "live" and the Pause button stayed greyed for as long as it hung.
 */
const API_TIMEOUT_MS = 5000
/** How much throughput history the chart keeps, in seconds. */
const CHART_WINDOW_S = 300
const RECEIPT_ROWS = 20
// per tab, gone when it closes: the token opens the API to whoever holds it
const TOKEN_KEY = 'spareband-api-token'
const SERIES = [
  { label: 'exit', stroke: '#e07b24' },
  { label: 'proxy', stroke: '#2a7ab8' }
]

/** @type {typeof uPlot} */
const UPlot = /** @type {any} */ (window).uPlot

/** @param {string} id */
function byId (id) {
  const el = document.getElementById(id)
  if (el == null) throw new Error(`the page has no #${id}`)
  return el
}

/**
 * @param {string} id
 * @param {string} text
 * @param {number | string} [raw] the exact figure behind a rounded one, kept in data-value
 */
function show (id, text, raw) {
  const el = byId(id)
  el.textContent = text
  if (raw != null) el.dataset.value = String(raw)
}

/** @param {string} id @param {boolean} hidden */
function hide (id, hidden) {
  byId(id).hidden = hidden
}

/** @param {string} id @param {string[]} items */
function showList (id, items) {
  byId(id).replaceChildren(...items.map(text => {
    const li = document.createElement('li')
    li.textContent = text
    return li
  }))
}

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB']

/** Decimal units, as the exit's quotas (exit.daily_quota_gb) count them. @param {number | string | null | undefined} value */
function formatBytes (value) {
  const n = Number(value)
  if (value == null || !Number.isFinite(n)) return '—'
  let v = n
  let unit = 0
  while (Math.abs(v) >= 1000 && unit < BYTE_UNITS.length - 1) {
    v /= 1000
    unit++
  }
  return unit === 0 ? `${v} B` : `${v.toFixed(Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0)} ${BYTE_UNITS[unit]}`
}

/** @param {number | null | undefined} bytesPerSecond */
function formatRate (bytesPerSecond) {
  return bytesPerSecond == null ? '—' : `${formatBytes(Math.round(bytesPerSecond))}/s`
}

/** @param {number} seconds */
function formatDuration (seconds) {
  const d = Math.floor(seconds / 86400)
  const h = Math.floor(seconds % 86400 / 3600)
  const m = Math.floor(seconds % 3600 / 60)
  const s = Math.floor(seconds % 60)
  if (d > 0) return `${d} d ${h} h`
  if (h > 0) return `${h} h ${m} min`
  if (m > 0) return `${m} min ${s} s`
  return `${s} s`
}

/** @param {number} ms */
function formatTime (ms) {
  const t = new Date(ms)
  return t.toDateString() === new Date().toDateString() ? t.toLocaleTimeString() : t.toLocaleString()
}

/** A peer id short enough for a table cell; the whole one is in the title. @param {string} id */
function shortPeer (id) {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
}

/** @param {number} used @param {number} limit */
function quotaText (used, limit) {
  if (limit > 0) return `${formatBytes(used)} of ${formatBytes(limit)} (${(100 * used / limit).toFixed(1)} %)`
  return `${formatBytes(used)} (no limit)`
}

/** @param {string} id @param {number} used @param {number} limit */
function showQuota (id, used, limit) {
  show(id, quotaText(used, limit), used)
  const meter = /** @type {HTMLMeterElement} */ (byId(`${id}-meter`))
  meter.hidden = !(limit > 0)
  if (limit > 0) {
    meter.max = limit
    meter.high = 0.9 * limit
    meter.value = Math.min(used, limit)
  }
}

// ---- the API ----

class Unauthorized extends Error {}

/** @type {string | null} */
let token = null

/**
 * @param {string} path
 * @param {RequestInit} [init]
 * @returns {Promise<any>}
 */
async function api (path, init = {}) {
  const res = await fetch(path, { ...init, cache: 'no-store', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(API_TIMEOUT_MS) })
  if (res.status === 401) throw new Unauthorized()
  // a body that is no JSON is an empty one; a body the node stopped sending is no answer
  const body = await res.json().catch(err => { if (isTimeout(err)) throw err; return {} })
  if (!res.ok) throw Object.assign(new Error(`${path}: ${res.status} ${body.error ?? res.statusText}`), { status: res.status })
  return body
}

// ---- the token ----

/** Takes the token out of `#token=...`, and the fragment out of the address bar (and so out of history and bookmarks). */
function tokenFromFragment () {
  if (location.hash === '') return null
  const given = new URLSearchParams(location.hash.slice(1)).get('token')
  history.replaceState(null, '', location.pathname + location.search)
  return given
}

/** @param {string} message */
function askForToken (message) {
  stopPolling()
  token = null
  sessionStorage.removeItem(TOKEN_KEY)
  hide('board', true)
  hide('warnings', true)
  hide('login', false)
  show('login-message', message)
  show('link', '')
  const input = /** @type {HTMLInputElement} */ (byId('login-token'))
  input.value = ''
  input.focus()
}

/** @param {string} given */
function useToken (given) {
  token = given
  sessionStorage.setItem(TOKEN_KEY, given)
  hide('login', true)
  startPolling()
}

byId('login-form').addEventListener('submit', e => {
  e.preventDefault()
  const given = /** @type {HTMLInputElement} */ (byId('login-token')).value.trim()
  if (given !== '') useToken(given)
})

// ---- polling ----

/** Bumped at every start and stop, so an answer to an abandoned round is dropped. */
let round = 0
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer
/** When the node stopped answering, if it has. @type {number | null} */
let downSince = null

function startPolling () {
  stopPolling()
  void poll(round)
}

function stopPolling () {
  round++
  clearTimeout(timer)
}

/** Whether the chart has the node's recent history yet (fetched once per page, before the first live sample). */
let seeded = false

/** @param {number} mine */
async function poll (mine) {
  try {
    if (!seeded) {
      const history = await getOrNull('/v1/throughput')
      if (mine !== round) return
      if (history != null) chart.seed(history.samples)
      seeded = true
    }
    const status = await api('/v1/status')
    // a node without accounting keeps no receipts: not asked for them (each 404 is an error in the browser's console)
    const receipts = status.accounting != null ? await getOrNull(`/v1/receipts?limit=${RECEIPT_ROWS}`) : null
    if (mine !== round) return
    // before render: it leaves the label of a button out of use as it is
    setStale(false)
    render(status, receipts)
    // back: an action that failed while the node was away is replaced by what came of it
    if (downSince != null && byId('exit-action-message').textContent !== '') {
      show('exit-action-message', status.exit != null ? `the node answers again: its exit is ${status.exit.paused ? 'paused' : 'not paused'}` : '')
    }
    downSince = null
    show('link', `live · ${new Date().toLocaleTimeString()}`)
    byId('link').classList.remove('down')
    hide('stale-note', true)
  } catch (err) {
    if (mine !== round) return
    if (err instanceof Unauthorized) {
      askForToken('The node refused this token (401). Copy it again from api-token in the node\'s data directory.')
      return
    }
    downSince ??= Date.now()
    // a fetch that never reached the node is a TypeError, one it did not answer in time a TimeoutError; an error answer names itself
    const why = err instanceof TypeError || isTimeout(err) ? 'the node is not answering' : String(/** @type {Error} */ (err).message)
    show('link', `${why} (since ${new Date(downSince).toLocaleTimeString()}); retrying`)
    byId('link').classList.add('down')
    // what is shown is as of the last answer: greyed, and said where a phone's reader still sees it
    setStale(true)
    show('stale-note', `${why} since ${new Date(downSince).toLocaleTimeString()}: the figures below are from before then`)
    hide('stale-note', false)
  }
  if (mine === round) timer = setTimeout(() => { void poll(mine) }, POLL_MS)
}

/**
 * Greys the board while the node does not answer, and takes the exit's
 * button out of use: greyed alone, it still took a key press, and the
 * action then took effect when the node came back.
 * @param {boolean} stale
 */
function setStale (stale) {
  byId('board').classList.toggle('stale', stale)
  const toggle = /** @type {HTMLButtonElement} */ (byId('exit-toggle'))
  if (stale) {
    toggle.disabled = true
    toggle.dataset.stale = 'yes'
  } else if (toggle.dataset.stale === 'yes') {
    toggle.disabled = false
    delete toggle.dataset.stale
  }
}

/** @param {unknown} err */
function isTimeout (err) {
  return err instanceof DOMException && err.name === 'TimeoutError'
}

/**
 * GET `path`, or null when the node has no such route: no receipts when it
 * keeps no ledger (accounting off), no throughput history from an older node.
 * @param {string} path
 */
async function getOrNull (path) {
  try {
    return await api(path)
  } catch (err) {
    if (/** @type {any} */ (err).status === 404) return null
    throw err
  }
}

// ---- rendering ----

/** @param {Json} s @param {Json[] | null} receipts */
function render (s, receipts) {
  hide('board', false)
  renderNode(s)
  showList('warnings', s.warnings ?? [])
  hide('warnings', (s.warnings ?? []).length === 0)
  renderExit(s.exit)
  renderReputation(s.accounting)
  renderProxy(s.proxy)
  renderCredits(s.accounting)
  // on the node's clock, as the history the chart was seeded with: a browser whose clock is behind
  // (a dashboard opened over ssh -L from another machine) had every live sample dropped as older
  chart.add((s.time ?? Date.now()) / 1000, s)
  renderReceipts(receipts, s.peerId)
}

/** @param {Json} s */
function renderNode (s) {
  show('node-peer-id', s.peerId)
  show('node-region-head', `${s.region} · ${s.network}`)
  document.title = `spareband · ${s.region} · ${shortPeer(s.peerId)}`
  show('node-region', s.region)
  show('node-network', s.network)
  show('node-version', `${s.version} (node ${s.runtime?.node ?? '?'})`)
  show('node-uptime', formatDuration(s.uptimeSeconds), s.uptimeSeconds)
  show('node-connections', String(s.connections))
  show('node-peers', String(s.peers))
  show('node-dht', dhtText(s.dht))
  show('node-relay', relayText(s.relayService))
  showList('node-addresses', s.addresses ?? [])
}

/**
 * The DHT in words: its mode and routing table, what it holds for others,
 * and what it dropped for a peer writing past its bound or an older record
 * put back (a flood or a replay: worth a look).
 * @param {any} dht status().dht
 */
function dhtText (dht) {
  if (dht == null) return '?'
  const parts = [`${dht.mode}, ${dht.routingTableSize} peers in the routing table`]
  if (dht.stored != null) parts.push(`holds ${dht.stored.records} record(s), ${dht.stored.providers} provider entr${dht.stored.providers === 1 ? 'y' : 'ies'}`)
  const flood = (dht.dropped?.overPeerBound?.records ?? 0) + (dht.dropped?.overPeerBound?.providers ?? 0)
  if (flood > 0) parts.push(`${flood} dropped from peers writing past their bound`)
  if ((dht.dropped?.olderRecords ?? 0) > 0) parts.push(`${dht.dropped.olderRecords} older record(s) refused`)
  return parts.join('; ')
}

/**
 * The relay this node runs for others, in words.
 * @param {Json | undefined} r
 */
function relayText (r) {
  if (r == null) return 'off (relay.enabled = false)'
  if (r.running !== true) return `off: ${r.reason}`
  return `on, ${r.reservations} reservation(s), ${r.circuits} circuit(s)`
}

/** @param {Json | undefined} e */
function renderExit (e) {
  const on = e?.enabled === true
  hide('exit-off', on)
  hide('exit-details', !on)
  hide('exit-toggle', !on)
  const state = byId('exit-state')
  if (e == null || !on) {
    state.textContent = 'off'
    state.className = 'badge off'
    return
  }
  const [text, tone] = e.paused
    ? ['paused', 'bad']
    : e.quotaExceeded != null
      ? [`${e.quotaExceeded} quota used up`, 'bad']
      : !e.withinSchedule ? ['outside its schedule', 'off'] : ['sharing', 'ok']
  state.textContent = text
  state.className = `badge ${tone}`
  const toggle = /** @type {HTMLButtonElement} */ (byId('exit-toggle'))
  if (!toggle.disabled) {
    toggle.textContent = e.paused ? 'Resume' : 'Pause'
    toggle.dataset.action = e.paused ? 'resume' : 'pause'
  }
  show('exit-policy', e.policy)
  show('exit-bytes-in', formatBytes(e.bytesIn), e.bytesIn)
  show('exit-bytes-out', formatBytes(e.bytesOut), e.bytesOut)
  show('exit-tunnels', `${e.tunnelsOpen} open, ${e.tunnelsTotal} since start`, e.tunnelsOpen)
  const byStatus = Object.entries(e.deniedByStatus ?? {}).map(([status, n]) => `${status} ${n}`)
  show('exit-denied', e.denied === 0 ? 'none' : `${e.denied}: ${byStatus.join(', ')}`, e.denied)
  showQuota('exit-quota-day', e.quota.dayBytes, e.quota.dailyLimit)
  showQuota('exit-quota-month', e.quota.monthBytes, e.quota.monthlyLimit)
  show('exit-schedule', `${e.schedule ?? '?'}: ${e.withinSchedule ? 'sharing now' : 'not sharing now'}`, e.withinSchedule ? 'open' : 'closed')
  const l = e.limits
  /** @param {number} rate */
  const cap = rate => rate > 0 ? formatRate(rate) : 'none'
  show('exit-caps', `download ${cap(l.downloadBytesPerSecond)}, upload ${cap(l.uploadBytesPerSecond)}, each consumer ${cap(l.perConsumerBytesPerSecond)}`)
}

/** What consumers' reports say of this exit. @param {Json | undefined} a */
function renderReputation (a) {
  const own = a?.reputation?.own
  show('exit-reputation', own == null
    ? 'accounting is off'
    : own.score == null
      ? 'no consumer has reported on this exit yet'
      : `${own.score.toFixed(2)} (0.5 neutral) from ${own.reporters} consumer${own.reporters === 1 ? '' : 's'}`, own?.score ?? '')
}

byId('exit-toggle').addEventListener('click', async () => {
  const toggle = /** @type {HTMLButtonElement} */ (byId('exit-toggle'))
  const action = toggle.dataset.action
  toggle.disabled = true
  show('exit-action-message', '')
  try {
    const exit = await api(`/v1/exit/${action}`, { method: 'POST' })
    renderExit(exit)
    // done, but not saved: it holds until the node stops
    if (exit.stateNotSaved != null) show('exit-action-message', `${action === 'pause' ? 'paused' : 'resumed'}, but only until the node stops: ${exit.stateNotSaved}`)
    // resumed, but something else still keeps new tunnels out: said as `spareband resume` says it
    else if (action === 'resume') {
      const why = []
      if (exit.quotaExceeded != null) why.push(`its ${exit.quotaExceeded} data quota is used up`)
      if (exit.withinSchedule === false) why.push('it is outside its sharing schedule')
      if (why.length > 0) show('exit-action-message', `resumed, but it takes no new tunnels yet: ${why.join(', and ')}`)
    }
  } catch (err) {
    if (err instanceof Unauthorized) askForToken('The node refused this token (401).')
    else if (isTimeout(err)) show('exit-action-message', `the node did not answer within ${API_TIMEOUT_MS / 1000} s: it may still ${action} the exit once it does`)
    else show('exit-action-message', `could not ${action} the exit: ${/** @type {Error} */ (err).message}`)
  } finally {
    // a board gone stale meanwhile keeps it out of use until the node answers
    if (toggle.dataset.stale !== 'yes') toggle.disabled = false
    // the button's label follows the state the node reports, at once
    startPolling()
  }
})

/** @param {Json | undefined} p */
function renderProxy (p) {
  hide('proxy-off', p != null)
  hide('proxy-details', p == null)
  if (p == null) return
  show('proxy-socks-port', String(p.socksPort))
  show('proxy-http-port', String(p.httpPort))
  show('proxy-bytes-in', formatBytes(p.bytesIn), p.bytesIn)
  show('proxy-bytes-out', formatBytes(p.bytesOut), p.bytesOut)
  show('proxy-tunnels', `${p.tunnelsOpen} open, ${p.tunnelsTotal} since start`, p.tunnelsOpen)
  // what the exits said, as the exit's own refusals are shown: "3: INSUFFICIENT_CREDIT 2, NO_EXIT 1"
  const byStatus = Object.entries(p.failedByStatus ?? {}).map(([status, n]) => `${status} ${n}`)
  show('proxy-failed', p.failed === 0 || byStatus.length === 0 ? String(p.failed) : `${p.failed}: ${byStatus.join(', ')}`, p.failed)
  show('proxy-broken', String(p.broken ?? 0), p.broken ?? 0)
}

/** @param {Json | undefined} a */
function renderCredits (a) {
  hide('credits-off', a != null)
  hide('credits-details', a == null)
  if (a == null) return
  show('credits-balance', `${a.balance} credits`, a.balance)
  show('credits-earned', `${a.earned} credits for ${formatBytes(a.bytesCarried)} carried`, a.earned)
  show('credits-unpaid', `${a.unpaid} credits`, a.unpaid)
  show('credits-spent', `${a.spent} credits for ${formatBytes(a.bytesUsed)} used`, a.spent)
  show('credits-allowance', `${a.allowance} credits`, a.allowance)
  const p = a.pending ?? {}
  show('credits-pending', `${formatBytes(p.carriedUnsignedBytes)} carried, ${formatBytes(p.usedUnsignedBytes)} used`)
  // times the exit held a consumer's traffic until its receipts caught up, not consumers
  show('credits-holds', `${p.holds ?? 0} time${p.holds === 1 ? '' : 's'}`, p.holds ?? 0)
  // carried but never signed for (clients cut off mid-transfer): why earned covers less than bytes out
  show('credits-forgiven', `${formatBytes(p.forgivenBytes ?? 0)} carried, never signed for`, p.forgivenBytes ?? 0)
  show('credits-receipts', String(a.receipts), a.receipts)
}

/** @param {Json[] | null} rows @param {string} self */
function renderReceipts (rows, self) {
  const empty = rows == null ? 'Accounting is off: this node keeps no receipts.' : rows.length === 0 ? 'No receipts yet.' : ''
  show('receipts-empty', empty)
  hide('receipts-empty', empty === '')
  hide('receipts-table', empty !== '')
  byId('receipts').replaceChildren(...(rows ?? []).map(r => {
    const asExit = r.exit === self
    const peer = asExit ? r.consumer : r.exit
    const tr = document.createElement('tr')
    tr.dataset.session = r.sessionId
    /** @param {string} text @param {{ title?: string, className?: string }} [opts] */
    const cell = (text, opts = {}) => {
      const td = document.createElement('td')
      td.textContent = text
      if (opts.title != null) td.title = opts.title
      if (opts.className != null) td.className = opts.className
      return td
    }
    tr.append(
      cell(formatTime(r.updatedAt)),
      cell(asExit ? 'carried' : r.consumer === self ? 'used' : 'seen'),
      cell(shortPeer(peer), { title: peer, className: 'mono' }),
      cell(formatBytes(r.bytesUp), { title: `${r.bytesUp} bytes`, className: 'num' }),
      cell(formatBytes(r.bytesDown), { title: `${r.bytesDown} bytes`, className: 'num' }),
      cell(r.cost, { className: 'num' }),
      cell(r.source)
    )
    return tr
  }))
}

// ---- the throughput chart ----

/**
 * An x-axis label: the local time at a whole minute (14:05), else its
 * seconds (:30); the chart spans minutes of one day, so no date.
 * @param {number} seconds since the epoch
 */
function timeTick (seconds) {
  const d = new Date(seconds * 1000)
  const two = (/** @type {number} */ n) => String(n).padStart(2, '0')
  return d.getSeconds() === 0 ? `${two(d.getHours())}:${two(d.getMinutes())}` : `:${two(d.getSeconds())}`
}

/**
 * Bytes per second of the exit and the proxy, from successive status
 * counters (in + out). A counter that went down (the node restarted) leaves
 * a gap instead of a negative rate.
 */
class ThroughputChart {
  /** seconds @type {number[]} */
  times = []
  /** one column per SERIES, bytes/s @type {(number | null)[][]} */
  rates = SERIES.map(() => [])
  /** @type {{ t: number, totals: (number | null)[] } | undefined} */
  last
  /** @type {uPlot | undefined} */
  plot

  /**
   * The node's last minutes of counters (GET /v1/throughput), before the
   * first live sample: a reload does not start from an empty chart.
   * @param {[number, number | null, number | null][]} samples ms, exit and proxy totals
   */
  seed (samples) {
    for (const [at, ...totals] of samples) this.push(at / 1000, totals)
    this.draw()
  }

  /** @param {number} t seconds @param {Json} s */
  add (t, s) {
    const now = this.push(t, [s.exit?.enabled === true ? s.exit.bytesIn + s.exit.bytesOut : null, s.proxy != null ? s.proxy.bytesIn + s.proxy.bytesOut : null])
    if (now == null) return
    SERIES.forEach((s, i) => show(`rate-${s.label}`, formatRate(now[i]), now[i] ?? ''))
    this.draw()
  }

  /**
   * Takes totals at `t` (seconds): the rates since the last ones, or
   * undefined for the first, or for totals no later than the last.
   * @param {number} t @param {(number | null)[]} totals
   */
  push (t, totals) {
    const prev = this.last
    if (prev != null && t <= prev.t) return undefined
    this.last = { t, totals }
    if (prev == null) return
    const now = totals.map((v, i) => {
      const before = prev.totals[i]
      return v == null || before == null || v < before ? null : (v - before) / (t - prev.t)
    })
    this.times.push(t)
    now.forEach((r, i) => this.rates[i].push(r))
    while (this.times.length > 0 && this.times[0] < t - CHART_WINDOW_S) {
      this.times.shift()
      for (const column of this.rates) column.shift()
    }
    return now
  }

  draw () {
    const el = byId('chart')
    /** @type {uPlot.AlignedData} */
    const data = [this.times, ...this.rates]
    if (this.plot == null) {
      this.plot = new UPlot({
        width: el.clientWidth,
        height: 220,
        scales: {
          // always the whole window, so the chart scrolls instead of stretching its first seconds
          x: { time: true, range: (_u, _min, max) => [max - CHART_WINDOW_S, max] },
          // from zero, and never so flat that an idle line's noise fills the height
          y: { range: (_u, _min, max) => [0, Math.max(max, 1000) * 1.1] }
        },
        series: [{}, ...SERIES.map(s => ({ ...s, width: 2, value: (/** @type {uPlot} */ _u, /** @type {number | null} */ v) => formatRate(v) }))],
        // uPlot's own time labels put the date under the first tick, where it ran into the second
        axes: [{ values: (_u, splits) => splits.map(timeTick) }, { size: 80, values: (_u, splits) => splits.map(v => formatRate(v)) }]
      }, data, el)
      // the canvas follows the card's width
      new ResizeObserver(() => this.plot?.setSize({ width: el.clientWidth, height: 220 })).observe(el)
    } else {
      this.plot.setData(data)
    }
  }
}

const chart = new ThroughputChart()

// ---- start ----

const given = tokenFromFragment() ?? sessionStorage.getItem(TOKEN_KEY)
if (given == null || given === '') askForToken('')
else useToken(given)
