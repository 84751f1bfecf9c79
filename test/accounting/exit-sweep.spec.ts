/**
 * The exit forgets sessions nobody uses: memory stays bounded by what is in
 * use, however many session ids consumers make up, and nothing owed, paid
 * or unpublished is lost on the way. A real ExitSessions on a real ledger;
 * sweep() is called by hand where the node calls it once a minute.
 */

import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ExitSessions, FORGIVE_PER_HOUR, FORGIVE_SHARE, MAX_SESSIONS_PER_CONSUMER, OWED_SESSION_TTL, SIGNING_RECENTLY_MS } from '../../src/accounting/exit-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
import { tempDir } from '../utils/cli.ts'
import { parties } from './fixtures.ts'
import type { Party } from './fixtures.ts'
import { encodeReceipt, signAsConsumer } from '../../src/accounting/receipts.ts'
import type { PeerId } from '@libp2p/interface'

const MiB = 1024 * 1024

describe('exit session sweep', () => {
  let ledger: Ledger
  let exit: ExitSessions
  let consumers: PeerId[]
  let consumerParties: Party[]
  let exitParty: Party

  beforeEach(async () => {
    const [e, ...cs] = await parties(3)
    exitParty = e
    consumerParties = cs
    consumers = cs.map(c => peerIdFromPrivateKey(c.key))
    ledger = Ledger.open(join(await tempDir('sb-sweep-'), 'ledger.db'), { selfPeerId: peerIdFromPrivateKey(e.key) })
    exit = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: e.key, pricePerGbMicro: 1_000_000n, powDifficulty: 0, creditLimitMicro: -(10n ** 12n)
    })
  })
  afterEach(() => { ledger.close() })

  const startedAt = BigInt(Date.now())
  /** A receipt as the consumer signs it, for `down` bytes of session `sessionId`. */
  const receipt = async (c: Party, sessionId: string, down: number, seq: bigint): Promise<Uint8Array> => encodeReceipt(await signAsConsumer({
    sessionId, consumer: c.bytes, exit: exitParty.bytes, bytesUp: 0n, bytesDown: BigInt(down), seq, startedAt, updatedAt: startedAt + seq, pricePerGb: 1_000_000n
  }, c.key))
  // the receipt stream's handler, without the stream: what it answers
  const onReceipt = async (consumer: PeerId, bytes: Uint8Array): Promise<{ error?: string }> => (exit as any).onReceipt(consumer, bytes)

  it('caps the sessions a consumer may hold, and forgets unused ones after one untouched interval', () => {
    const [a, b] = consumers
    for (let i = 0; i < MAX_SESSIONS_PER_CONSUMER; i++) expect(exit.admit(a, `s-${i}`)).toBeUndefined()
    const refused = exit.admit(a, 'one-too-many')
    expect(refused?.status).toBe(TunnelStatus.RATE_LIMITED)
    expect(refused?.message).toMatch(/sessions/)
    // another consumer is not affected, and a session already held is still admitted
    expect(exit.admit(b, 's-0')).toBeUndefined()
    expect(exit.admit(a, 's-0')).toBeUndefined()
    expect(exit.sessionCount()).toBe(MAX_SESSIONS_PER_CONSUMER + 1)
    // the first sweep only marks (each was touched on admission); the second forgets
    exit.sweep()
    expect(exit.sessionCount()).toBe(MAX_SESSIONS_PER_CONSUMER + 1)
    void exit.meter(a, 's-1', 'down', 100) // in use: stays
    exit.sweep()
    expect(exit.sessionCount()).toBe(1)
    expect(exit.admit(a, 'one-too-many')).toBeUndefined()
  })

  it('over the threshold, admits a consumer that is signing (its tunnel waits with the held ones) and refuses one that stopped', async () => {
    const [a] = consumers
    let clock = Date.now()
    const e = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: exitParty.key, pricePerGbMicro: 1_000_000n, powDifficulty: 0, creditLimitMicro: -(10n ** 12n), now: () => clock
    })
    expect(e.admit(a, 'busy')).toBeUndefined()
    // 24 MiB on the way to it, 1 MiB of it signed: it is over the threshold, and signing
    const held = e.meter(a, 'busy', 'down', 24 * MiB)
    expect(held).toBeInstanceOf(Promise)
    expect(e.admit(a, 'busy')?.status).toBe(TunnelStatus.RATE_LIMITED)
    expect((await (e as any).onReceipt(a, await receipt(consumerParties[0], 'busy', MiB, 1n))).error).toBeUndefined()
    expect(e.pendingBytes()).toBe(23 * MiB)
    expect(e.admit(a, 'busy')).toBeUndefined()
    expect(e.admit(a, 'another')).toBeUndefined()
    // a new tunnel's first chunk waits too: nothing more is carried unsigned
    expect(e.meter(a, 'another', 'down', 1)).toBeInstanceOf(Promise)
    // no receipt for longer than the consumer's receipt interval: refused again
    clock += SIGNING_RECENTLY_MS + 1
    expect(e.admit(a, 'busy')?.status).toBe(TunnelStatus.RATE_LIMITED)
  })

  it('keeps a session that owes bytes, so a late receipt still settles them', async () => {
    const [a] = consumers
    exit.admit(a, 'owes')
    expect(exit.meter(a, 'owes', 'down', 5 * MiB)).toBeInstanceOf(Promise)
    let released = false
    void exit.gate(a)!.then(() => { released = true })
    for (let i = 0; i < 20; i++) exit.sweep()
    expect(exit.sessionCount()).toBe(1)
    // the consumer comes back (a laptop out of suspend) and signs all of it
    const answer = await onReceipt(a, await receipt(consumerParties[0], 'owes', 5 * MiB, 1n))
    expect(answer.error).toBeUndefined()
    await new Promise(resolve => setImmediate(resolve))
    expect(released).toBe(true)
    expect(exit.pendingBytes()).toBe(0)
    expect(exit.admit(a, 'next')).toBeUndefined()
  })

  it('writes off what a vanished consumer owes once its session sat unused for OWED_SESSION_TTL, and forgets it', async () => {
    let clock = 1_700_000_000_000
    const sweeping = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: exitParty.key, pricePerGbMicro: 1_000_000n, powDifficulty: 0, creditLimitMicro: -(10n ** 12n), now: () => clock
    })
    // consumers that crashed after a tunnel, before their receipt: each owes a little, and never comes back
    const [a, b] = consumers
    for (const c of [a, b]) {
      expect(sweeping.admit(c, `gone-${c.toString()}`)).toBeUndefined()
      expect(sweeping.meter(c, `gone-${c.toString()}`, 'down', 200_000)).toBeUndefined()
    }
    // a consumer held over the threshold whose tunnels then closed: its waiter must go too
    expect(sweeping.meter(b, `gone-${b.toString()}`, 'down', 5 * MiB)).toBeInstanceOf(Promise)
    const consumersMap = (sweeping as any).consumers as Map<string, unknown>
    // well within the limit: kept, for a late receipt
    for (let i = 0; i < 30; i++) { clock += 60_000; sweeping.sweep() }
    expect(sweeping.sessionCount()).toBe(2)
    expect(sweeping.pendingBytes()).toBe(400_000 + 5 * MiB)
    // past it: written off and forgotten, consumers and all
    for (let i = 0; i < 32; i++) { clock += 60_000; sweeping.sweep() }
    expect(clock - 1_700_000_000_000).toBeGreaterThan(OWED_SESSION_TTL)
    expect(sweeping.sessionCount()).toBe(0)
    expect(sweeping.pendingBytes()).toBe(0)
    expect(consumersMap.size).toBe(0)
  })

  it('writes off, after OWED_SESSION_TTL unused, bytes carried for a consumer on tunnels without a session', () => {
    let clock = 1_700_000_000_000
    const sweeping = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: exitParty.key, pricePerGbMicro: 1_000_000n, powDifficulty: 0, creditLimitMicro: -(10n ** 12n), now: () => clock
    })
    const consumersMap = (sweeping as any).consumers as Map<string, unknown>
    // a consumer that keeps no accounting sends no session id: nothing can sign these bytes
    for (const c of consumers) expect(sweeping.admit(c, '')).toBeUndefined()
    for (const c of consumers) void sweeping.meter(c, '', 'down', 100_000)
    for (let i = 0; i < 30; i++) { clock += 60_000; sweeping.sweep() }
    expect(consumersMap.size).toBe(2)
    for (let i = 0; i < 32; i++) { clock += 60_000; sweeping.sweep() }
    expect(sweeping.pendingBytes()).toBe(0)
    expect(consumersMap.size).toBe(0)
  })

  it('a forgotten session goes on from its stored receipt: the old total signs off nothing new', async () => {
    const [a] = consumers
    exit.admit(a, 's')
    for (let i = 1; i <= 10; i++) {
      expect(exit.meter(a, 's', 'down', MiB)).toBeUndefined()
      expect((await onReceipt(a, await receipt(consumerParties[0], 's', i * MiB, BigInt(i)))).error).toBeUndefined()
    }
    exit.sweep()
    exit.sweep()
    expect(exit.sessionCount()).toBe(0)
    // the same session id again; its last receipt sent again, or the same total with a new seq
    expect(exit.admit(a, 's')).toBeUndefined()
    expect((await onReceipt(a, await receipt(consumerParties[0], 's', 10 * MiB, 10n))).error).toMatch(/does not advance/)
    expect((await onReceipt(a, await receipt(consumerParties[0], 's', 10 * MiB, 11n))).error).toBeUndefined()
    // new bytes are unsigned bytes: held past the threshold
    const held = Array.from({ length: 6 }, () => exit.meter(a, 's', 'down', MiB))
    expect(exit.pendingBytes()).toBe(6 * MiB)
    expect(held.at(-1)).toBeInstanceOf(Promise)
  })

  it('lets a consumer off what a cut tunnel lost on the way, within its hourly allowance for that', async () => {
    const [a] = consumers
    const forgiving = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: exitParty.key, pricePerGbMicro: 1_000_000n, powDifficulty: 0, creditLimitMicro: -(10n ** 12n), forgiveDelayMs: 20
    })
    await forgiving.start({ handle: async () => {}, unhandle: async () => {} })
    try {
      const onCut = async (consumer: PeerId, bytes: Uint8Array): Promise<{ error?: string }> => (forgiving as any).onReceipt(consumer, bytes)
      forgiving.admit(a, 'cut')
      // 5 MiB sent, the client went away: the consumer got 3 MiB and signs them
      expect(forgiving.meter(a, 'cut', 'down', 5 * MiB)).toBeInstanceOf(Promise)
      expect((await onCut(a, await receipt(consumerParties[0], 'cut', 3 * MiB, 1n))).error).toBeUndefined()
      expect(forgiving.pendingBytes()).toBe(2 * MiB)
      // a tunnel that ended normally lets nothing off
      forgiving.tunnelEnded(a, 'cut', 5 * MiB, false)
      await new Promise(resolve => setTimeout(resolve, 60))
      expect(forgiving.pendingBytes()).toBe(2 * MiB)
      forgiving.tunnelEnded(a, 'cut', 5 * MiB, true)
      await new Promise(resolve => setTimeout(resolve, 60))
      expect(forgiving.pendingBytes()).toBe(0)
      expect(forgiving.forgiven).toBe(2 * MiB)
      // the session goes on where the consumer's count is: its next receipt covers only what came after
      expect(forgiving.meter(a, 'cut', 'down', MiB)).toBeUndefined()
      expect((await onCut(a, await receipt(consumerParties[0], 'cut', 4 * MiB, 2n))).error).toBeUndefined()
      expect(forgiving.pendingBytes()).toBe(0)
      // at most FORGIVE_PER_HOUR (16 MiB) an hour, and a 32nd of what it paid for (4 MiB: 128 KiB):
      // 20 MiB more lost, 14 MiB and 128 KiB let off
      forgiving.admit(a, 'cut2')
      void forgiving.meter(a, 'cut2', 'down', 20 * MiB)
      forgiving.tunnelEnded(a, 'cut2', 20 * MiB, true)
      await new Promise(resolve => setTimeout(resolve, 60))
      // (plus the few bytes the allowance refilled while the test ran: 16 MiB an hour is 4.7 bytes a millisecond)
      expect(forgiving.forgiven).toBeGreaterThanOrEqual(FORGIVE_PER_HOUR + 4 * MiB / FORGIVE_SHARE)
      expect(forgiving.forgiven).toBeLessThan(FORGIVE_PER_HOUR + 4 * MiB / FORGIVE_SHARE + 64 * 1024)
      expect(forgiving.pendingBytes()).toBe(20 * MiB - (forgiving.forgiven - 2 * MiB))
    } finally {
      await forgiving.stop()
    }
  })

  it('lets off, as the hourly allowance refills, what a consumer lost past it', async () => {
    const [a] = consumers
    let clock = 1_700_000_000_000
    const forgiving = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: exitParty.key, pricePerGbMicro: 1_000_000n, powDifficulty: 0, creditLimitMicro: -(10n ** 12n), forgiveDelayMs: 10, now: () => clock
    })
    await forgiving.start({ handle: async () => {}, unhandle: async () => {} })
    try {
      forgiving.admit(a, 'lossy')
      // 24 MiB lost with cut tunnels, none of it received
      void forgiving.meter(a, 'lossy', 'down', 24 * MiB)
      forgiving.tunnelEnded(a, 'lossy', 24 * MiB, true)
      await new Promise(resolve => setTimeout(resolve, 50))
      expect(forgiving.forgiven).toBe(FORGIVE_PER_HOUR)
      expect(forgiving.pendingBytes()).toBe(8 * MiB)
      expect(forgiving.admit(a, 'new')?.status).toBe(TunnelStatus.RATE_LIMITED)
      // half an hour on: half the allowance back, let off by the sweep
      clock += 30 * 60_000
      forgiving.sweep()
      expect(forgiving.pendingBytes()).toBe(0)
      expect(forgiving.forgiven).toBe(24 * MiB)
      expect(forgiving.admit(a, 'new')).toBeUndefined()
    } finally {
      await forgiving.stop()
    }
  })

  it('lets off what a consumer lost past the hourly allowance as it pays for more: a 32nd of what it pays', async () => {
    const [a] = consumers
    const clock = Date.now()
    const forgiving = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: exitParty.key, pricePerGbMicro: 1_000_000n, powDifficulty: 0, creditLimitMicro: -(10n ** 12n), forgiveDelayMs: 10, now: () => clock
    })
    await forgiving.start({ handle: async () => {}, unhandle: async () => {} })
    try {
      const onReceipt = async (bytes: Uint8Array): Promise<{ error?: string }> => (forgiving as any).onReceipt(a, bytes)
      forgiving.admit(a, 'paying')
      forgiving.admit(a, 'scraping')
      // a scraper whose clients time out: 24 MiB lost with cut tunnels, 8 MiB past the hour's allowance
      void forgiving.meter(a, 'scraping', 'down', 24 * MiB)
      forgiving.tunnelEnded(a, 'scraping', 24 * MiB, true)
      await new Promise(resolve => setTimeout(resolve, 50))
      expect(forgiving.pendingBytes()).toBe(8 * MiB)
      // held though it signed all it got, and told why
      const refused = forgiving.admit(a, 'next')
      expect(refused?.status).toBe(TunnelStatus.RATE_LIMITED)
      expect(refused?.message).toBe(`${8 * MiB} bytes carried but not signed (limit ${4 * MiB}), ${8 * MiB} of them lost with tunnels cut mid-transfer past what this exit lets off (${FORGIVE_PER_HOUR} bytes an hour, and 1/32 of what is paid for): send receipts`)
      // its next receipts pay for 128 MiB more (signed as it sends an upload, say): 4 MiB let off
      void forgiving.meter(a, 'paying', 'up', 128 * MiB)
      expect((await onReceipt(await receipt(consumerParties[0], 'paying', 128 * MiB, 1n))).error).toBeUndefined()
      expect(forgiving.forgiven).toBe(FORGIVE_PER_HOUR + 128 * MiB / FORGIVE_SHARE)
      expect(forgiving.pendingBytes()).toBe(4 * MiB)
      // and 128 MiB more: the rest, at once, and it is let in again
      void forgiving.meter(a, 'paying', 'up', 128 * MiB)
      expect((await onReceipt(await receipt(consumerParties[0], 'paying', 256 * MiB, 2n))).error).toBeUndefined()
      expect(forgiving.forgiven).toBe(24 * MiB)
      expect(forgiving.pendingBytes()).toBe(0)
      expect(forgiving.admit(a, 'next')).toBeUndefined()
    } finally {
      await forgiving.stop()
    }
  })
})
