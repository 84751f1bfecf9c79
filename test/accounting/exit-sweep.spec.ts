/**
 * The exit forgets sessions nobody uses: memory stays bounded by what is in
 * use, however many session ids consumers make up, and nothing owed or
 * unpublished is lost on the way. A real ExitSessions on a real ledger;
 * sweep() is called by hand where the node calls it once a minute.
 */

import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { join } from 'node:path'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ExitSessions, MAX_SESSIONS_PER_CONSUMER } from '../../src/accounting/exit-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { TunnelStatus } from '../../src/relay/tunnel-protocol.ts'
import { tempDir } from '../utils/cli.ts'
import { parties } from './fixtures.ts'
import type { PeerId } from '@libp2p/interface'

const MiB = 1024 * 1024

describe('exit session sweep', () => {
  let ledger: Ledger
  let exit: ExitSessions
  let consumers: PeerId[]

  beforeEach(async () => {
    const [e, ...cs] = await parties(3)
    consumers = cs.map(c => peerIdFromPrivateKey(c.key))
    ledger = Ledger.open(join(await tempDir('sb-sweep-'), 'ledger.db'), { selfPeerId: peerIdFromPrivateKey(e.key) })
    exit = new ExitSessions({ logger: defaultLogger() }, {
      ledger, privateKey: e.key, pricePerGbMicro: 1_000_000n, powDifficulty: 0, creditLimitMicro: -(10n ** 12n)
    })
  })
  afterEach(() => { ledger.close() })

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

  it('keeps a session that owes bytes for ten intervals, and the debt for good', () => {
    const [a] = consumers
    exit.admit(a, 'owes')
    void exit.meter(a, 'owes', 'down', 3 * MiB)
    for (let i = 0; i < 10; i++) exit.sweep()
    expect(exit.sessionCount()).toBe(1)
    exit.sweep()
    expect(exit.sessionCount()).toBe(0)
    // the 3 MiB are still unsigned against the consumer: 2 MiB more and it is held
    expect(exit.pendingBytes()).toBe(3 * MiB)
    expect(exit.meter(a, 'new', 'down', 2 * MiB)).toBeInstanceOf(Promise)
  })
})
