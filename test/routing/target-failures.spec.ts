import { describe, expect, it } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { MAX_TARGETS, TARGET_EVIDENCE_WINDOW_MS, TargetFailureJudge } from '../../src/routing/target-failures.ts'
import { RoutingSelector } from '../../src/routing/routing-selector.ts'
import type { ExitDiscovery } from '../../src/routing/discovery.ts'
import type { PeerId } from '@libp2p/interface'

const minute = 60_000

describe('target failures: whose fault', () => {
  it('a target no exit reaches counts against none', () => {
    const judge = new TargetFailureJudge()
    expect(judge.failure('dead.example:443', { exit: 'A', at: 0, status: 'DNS_FAILED' })).toBe(false)
    expect(judge.failure('dead.example:443', { exit: 'B', at: minute, status: 'DNS_FAILED' })).toBe(false)
    expect(judge.success('other.example:443', 'C', 2 * minute)).toEqual([])
  })

  it('a target another exit reached just before counts against the exit that failed', () => {
    const judge = new TargetFailureJudge()
    expect(judge.success('up.example:443', 'B', 0)).toEqual([])
    expect(judge.failure('up.example:443', { exit: 'A', at: minute, status: 'CONNECT_REFUSED' })).toBe(true)
    // the same exit's earlier success is no evidence against it
    expect(judge.failure('up.example:443', { exit: 'B', at: 2 * minute, status: 'TIMEOUT' })).toBe(false)
  })

  it('a failure waits for a later success elsewhere, within the window', () => {
    const judge = new TargetFailureJudge()
    judge.failure('t:80', { exit: 'A', at: 0, status: 'UNREACHABLE' })
    judge.failure('t:80', { exit: 'B', at: 0, status: 'UNREACHABLE' })
    // B itself gets through later: A's failure counts, B's own does not (B reached it)
    expect(judge.success('t:80', 'B', 3 * minute)).toEqual([{ exit: 'A', at: 0, status: 'UNREACHABLE' }])
    // A's failure counted once: not again at the next success
    expect(judge.success('t:80', 'C', 4 * minute)).toEqual([{ exit: 'B', at: 0, status: 'UNREACHABLE' }])
    expect(judge.success('t:80', 'D', 5 * minute)).toEqual([])
  })

  it('evidence older than the window does not count', () => {
    const judge = new TargetFailureJudge()
    judge.success('t:80', 'B', 0)
    expect(judge.failure('t:80', { exit: 'A', at: TARGET_EVIDENCE_WINDOW_MS + 1, status: 'DNS_FAILED' })).toBe(false)
    expect(judge.success('t:80', 'C', 3 * TARGET_EVIDENCE_WINDOW_MS)).toEqual([])
  })

  it('stays bounded under a flood of distinct targets', () => {
    const judge = new TargetFailureJudge()
    for (let i = 0; i < MAX_TARGETS * 2; i++) {
      judge.failure(`dead-${i}.example:443`, { exit: 'A', at: i, status: 'DNS_FAILED' })
      judge.success(`up-${i}.example:443`, 'B', i)
    }
    expect(judge.size.waiting).toBe(MAX_TARGETS)
    expect(judge.size.reached).toBe(MAX_TARGETS)
  })
})

describe('the routing selector\'s telemetry', () => {
  async function peer (): Promise<PeerId> {
    return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  }

  async function makeSelector (now: () => number): Promise<{ selector: RoutingSelector, a: PeerId, b: PeerId }> {
    const self = await peer()
    const libp2p = { peerId: self, getConnections: () => [] }
    const selector = new RoutingSelector(libp2p as any, { discovery: {} as unknown as ExitDiscovery, now })
    return { selector, a: await peer(), b: await peer() }
  }

  it('dead targets do not sink the exits that tried them; a target others reach does', async () => {
    let t = 1_000_000
    const { selector, a, b } = await makeSelector(() => t)
    for (let i = 0; i < 20; i++) {
      selector.report(a, { region: 'de' }, { ok: false, status: 'DNS_FAILED', target: `dead-${i}.example:443` })
      selector.report(b, { region: 'de' }, { ok: false, status: 'DNS_FAILED', target: `dead-${i}.example:443` })
      t += 1000
    }
    expect(selector.telemetry.predict(a.toString(), t).failures).toBe(0)
    expect(selector.telemetry.predict(b.toString(), t).failures).toBe(0)
    // a target b reaches and a does not: a's failures count
    for (let i = 0; i < 5; i++) {
      selector.report(b, { region: 'de' }, { ok: true, target: `up-${i}.example:443` })
      selector.report(a, { region: 'de' }, { ok: false, status: 'CONNECT_REFUSED', target: `up-${i}.example:443` })
      t += 1000
    }
    expect(selector.telemetry.predict(a.toString(), t).failures).toBeGreaterThan(4)
    expect(selector.telemetry.predict(b.toString(), t).failures).toBe(0)
    // the exit's own faults count at once, target or not
    selector.report(b, { region: 'de' }, { ok: false, status: 'BUSY', target: 'up-0.example:443' })
    expect(selector.telemetry.predict(b.toString(), t).failures).toBeGreaterThan(0.9)
  })
})
