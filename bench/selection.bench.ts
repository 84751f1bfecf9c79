/**
 * Selection bench: what choosing an exit costs a consumer, per request.
 *
 * Every proxied connection asks selection for exits, so its cost sits on
 * each request's path; the target is well under 10 ms to rank 10,000
 * candidates (a large region) for the top k. Also measured: telemetry
 * updates and predictions (one each per tunnel), and signing plus
 * validating capacity ads (an exit signs one per re-put; every DHT peer
 * that stores or returns one validates it).
 *
 * `npm run bench`, or `node dist/bench/selection.bench.js` after
 * `npm run build`. The randomness is seeded, so runs differ only by timing.
 * Environment: SPAREBAND_BENCH_STRICT=1 exits 1 when the target is missed.
 */

import { pathToFileURL } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { capacityKey, createCapacityValidator, encodeCapacityAd, signCapacityAd } from '../src/routing/capacity-ad.ts'
import { mulberry32 } from '../src/routing/random.ts'
import { ExitTelemetry, selectExits } from '../src/routing/selection.ts'
import type { RandomSource } from '../src/routing/random.ts'
import type { Candidate } from '../src/routing/selection.ts'

const TARGET_SELECT_US = 10_000
const NOW = Date.UTC(2026, 10, 24, 19, 30)

interface Timing {
  /** Median µs per operation. */
  p50: number
  p99: number
}

/** Times `fn` one call at a time, after a warm-up so the JIT has settled. */
function time (iterations: number, fn: () => void): Timing {
  for (let i = 0; i < Math.min(50, iterations); i++) fn()
  const us: number[] = []
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now()
    fn()
    us.push((performance.now() - t0) * 1000)
  }
  us.sort((a, b) => a - b)
  return { p50: us[Math.floor(us.length / 2)], p99: us[Math.floor(us.length * 0.99)] }
}

/** Operations per second of `fn`, timed in a batch of `n` (for operations too short or too async to time one by one). */
async function rate (n: number, fn: (i: number) => Promise<unknown> | unknown): Promise<number> {
  for (let i = 0; i < Math.min(100, n); i++) await fn(i)
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await fn(i)
  return n / ((performance.now() - t0) / 1000)
}

function line (area: string, name: string, value: string, extra = ''): void {
  console.log(`${area.padEnd(11)}${name.padEnd(30)}${value}${extra === '' ? '' : `  (${extra})`}`)
}

function candidates (n: number, random: RandomSource): Candidate[] {
  return Array.from({ length: n }, (_, i) => ({
    peerId: `exit-${i}`,
    region: 'de',
    capacityMbps: 1 + random() * 1000,
    load: random(),
    pricePerGbMicro: Math.floor(random() * 2_000_000),
    rttMs: 5 + random() * 300,
    reputation: random(),
    verified: random() < 0.05 ? 'mismatch' : 'verified'
  }))
}

/** A consumer that has used a fifth of the exits over the past week. */
function telemetryFor (cands: Candidate[], random: RandomSource): ExitTelemetry {
  const t = new ExitTelemetry()
  for (let i = 0; i < cands.length; i += 5) {
    const speed = 100_000 + random() * 10_000_000
    for (let j = 0; j < 20; j++) {
      const at = NOW - random() * 7 * 24 * 3_600_000
      if (random() < 0.05) t.recordFailure(cands[i].peerId, { at, status: 'TIMEOUT' })
      else t.recordSuccess(cands[i].peerId, { at, bytes: 1_000_000, durationMs: 1e9 / speed, ttfbMs: 50 + random() * 500 })
    }
  }
  return t
}

function benchSelection (): boolean {
  const random = mulberry32(1)
  const cands = candidates(10_000, random)
  const telemetry = telemetryFor(cands, random)
  const small = cands.slice(0, 100)
  let ok = true

  const cases: Array<[string, Candidate[], { explore: number, limit?: number }]> = [
    ['select-1-of-10000', cands, { explore: 0.1, limit: 1 }],
    ['select-10-of-10000', cands, { explore: 0.1, limit: 10 }],
    ['select-10-of-10000-exploit', cands, { explore: 0, limit: 10 }],
    ['select-10-of-10000-explore', cands, { explore: 1, limit: 10 }],
    ['rank-all-10000', cands, { explore: 0.1 }],
    ['select-3-of-100', small, { explore: 0.1, limit: 3 }]
  ]
  for (const [name, list, opts] of cases) {
    const t = time(list.length >= 10_000 ? 300 : 3000, () => { selectExits(list, telemetry, { now: NOW, random, ...opts }) })
    const targeted = list.length >= 10_000 && opts.limit != null
    const verdict = targeted ? (t.p50 < TARGET_SELECT_US ? `target < ${TARGET_SELECT_US} µs: ok` : `target < ${TARGET_SELECT_US} µs: MISSED`) : ''
    if (targeted && t.p50 >= TARGET_SELECT_US) ok = false
    line('selection', name, `${t.p50.toFixed(0)} µs/selection`, `p99 ${t.p99.toFixed(0)} µs${verdict === '' ? '' : `; ${verdict}`}`)
  }
  return ok
}

async function benchTelemetry (): Promise<void> {
  const random = mulberry32(2)
  const t = new ExitTelemetry()
  const ids = Array.from({ length: 1000 }, (_, i) => `exit-${i}`)
  const record = await rate(200_000, i => {
    t.recordSuccess(ids[i % 1000], { at: NOW + i, bytes: 500_000, durationMs: 100 + random() * 900, ttfbMs: random() * 500 })
  })
  line('telemetry', 'record-success', `${Math.round(record).toLocaleString('en')} /s`)
  const predict = await rate(200_000, i => t.predict(ids[i % 1000], NOW + i))
  line('telemetry', 'predict', `${Math.round(predict).toLocaleString('en')} /s`)
}

async function benchCapacityAds (): Promise<void> {
  const key = await generateKeyPair('Ed25519')
  const dhtKey = capacityKey(peerIdFromPrivateKey(key))
  const validate = createCapacityValidator({ now: () => NOW })
  const init = {
    region: 'de',
    capacityMbps: 100,
    load: 0.25,
    pricePerGbMicro: 500_000n,
    allowedPorts: '80,443,8000-8100',
    multiaddrs: ['/ip4/193.99.144.80/tcp/4001', '/ip6/2a00:1450:4001:80b::200e/tcp/4001'],
    expiresAt: NOW + 6 * 3_600_000
  }
  const records: Uint8Array[] = []
  const sign = await rate(2000, async i => { records[i] = encodeCapacityAd(await signCapacityAd({ ...init, seq: i }, key)) })
  line('capacity', 'sign', `${Math.round(sign).toLocaleString('en')} ads/s`)
  const verify = await rate(2000, async i => { await validate(dhtKey, records[i]) })
  line('capacity', 'validate', `${Math.round(verify).toLocaleString('en')} ads/s`)
  const both = await rate(1000, async i => { await validate(dhtKey, encodeCapacityAd(await signCapacityAd({ ...init, seq: i }, key))) })
  line('capacity', 'sign+verify', `${Math.round(both).toLocaleString('en')} ads/s`)
}

export async function main (): Promise<void> {
  console.log(`selection bench: node ${process.version}, ${new Date().toISOString()}`)
  const ok = benchSelection()
  await benchTelemetry()
  await benchCapacityAds()
  if (!ok && process.env.SPAREBAND_BENCH_STRICT === '1') process.exitCode = 1
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
