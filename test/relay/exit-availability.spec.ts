/**
 * The exit says when it stops or begins taking new tunnels ('exit:offer:change'),
 * whatever the reason: the pause, the share schedule, a data quota. Its
 * capacity ad and the operator's log hang on it, so a quota used up must be
 * told at the moment the tunnels are cut, and a new day or window within the
 * schedule check, not at the ad's 30 s load check or the log's 10 s poll.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { createServer } from 'node:net'
import { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import { waitFor } from '../utils/cli.ts'
import { ask, exitNode, fakeDns } from '../utils/exit-node.ts'
import type { OfferChange } from '../../src/relay/exit.ts'
import type { ExitNode } from '../utils/exit-node.ts'
import type { AddressInfo, Server, Socket } from 'node:net'

const MiB = 1024 * 1024

/** A target on 127.0.0.1 that sends `bytes` to each connection, then holds it open. */
async function startSender (bytes: number): Promise<{ port: number, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer(s => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    s.write(Buffer.alloc(bytes, 0x61))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

/** What the exit announced, and its tunnels' ends, in the order they came. */
function record (exit: ExitNode): Array<OfferChange | { tunnelClosed: string | undefined }> {
  const seen: Array<OfferChange | { tunnelClosed: string | undefined }> = []
  exit.services.exit.addEventListener('exit:offer:change', e => seen.push(e.detail))
  exit.services.exit.addEventListener('exit:tunnel:close', e => seen.push({ tunnelClosed: e.detail.error }))
  return seen
}

describe('the exit announces when it stops or begins taking tunnels', () => {
  const closers: Array<() => Promise<void>> = []
  afterEach(async () => { for (const c of closers.splice(0).reverse()) await c() })

  it('a daily quota used up is announced before the tunnel it cut ends, and the new day within the schedule check', async () => {
    const target = await startSender(3 * MiB)
    closers.push(target.close)
    // Monday noon, local time; the quota's day turns at local midnight
    let now = new Date(2026, 10, 23, 12, 0)
    const exit = await exitNode({ policy: { allowedPorts: [[target.port, target.port]], allowPrivateTargets: true }, resolve: fakeDns({}), dailyQuotaBytes: MiB, scheduleCheckMs: 50, now: () => now })
    const consumer = await loopbackNode()
    closers.push(async () => { await consumer.stop(); await exit.stop() })
    const seen = record(exit)

    const open = await ask(consumer, exit, '127.0.0.1', target.port)
    expect(open.status).toBe(TunnelStatus.OK)
    await waitFor(() => seen.some(s => 'tunnelClosed' in s), { what: 'the tunnel cut at the quota' })
    expect(seen).toEqual([
      { paused: false, closed: 'daily-quota', was: null },
      { tunnelClosed: 'data quota used up' }
    ])
    expect((await ask(consumer, exit, '127.0.0.1', target.port)).status).toBe(TunnelStatus.QUOTA_EXCEEDED)

    // nothing more is said while nothing changes
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(seen).toHaveLength(2)

    now = new Date(2026, 10, 24, 0, 0, 1)
    await waitFor(() => seen.length === 3, { what: 'the new day announced' })
    expect(seen[2]).toEqual({ paused: false, closed: null, was: 'daily-quota' })
    const next = await ask(consumer, exit, '127.0.0.1', target.port)
    expect(next.status).toBe(TunnelStatus.OK)
    next.close()
  })

  it('the schedule closing and opening is announced, and the pause outranks it', async () => {
    // Monday 10:30 local time, inside "mon 10:00-11:00"
    let now = new Date(2026, 10, 23, 10, 30)
    const exit = await exitNode({ policy: { allowedPorts: [[443, 443]] }, resolve: fakeDns({}), schedule: 'mon 10:00-11:00', scheduleCheckMs: 50, now: () => now })
    closers.push(async () => { await exit.stop() })
    const seen = record(exit)

    now = new Date(2026, 10, 23, 11, 0, 1)
    await waitFor(() => seen.length === 1, { what: 'the window\'s end announced' })
    expect(seen[0]).toEqual({ paused: false, closed: 'outside-schedule', was: null })

    exit.services.exit.pause()
    // a second pause changes nothing, and says nothing
    exit.services.exit.pause()
    exit.services.exit.resume()
    expect(seen.slice(1)).toEqual([
      { paused: true, closed: 'paused', was: 'outside-schedule' },
      { paused: false, closed: 'outside-schedule', was: 'paused' }
    ])

    // next Monday's window
    now = new Date(2026, 10, 30, 10, 0)
    await waitFor(() => seen.length === 4, { what: 'the window\'s opening announced' })
    expect(seen[3]).toEqual({ paused: false, closed: null, was: 'outside-schedule' })
  })
})
