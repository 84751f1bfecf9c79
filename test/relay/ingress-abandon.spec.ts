import { describe, it, expect, afterEach } from 'vitest'
import { Uint8ArrayList } from 'uint8arraylist'
import { defaultLogger } from '@libp2p/logger'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { Ingress } from '../../src/relay/ingress.ts'
import { ConsumerSessions } from '../../src/accounting/consumer-sessions.ts'
import { Ledger } from '../../src/accounting/ledger.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import type { TunnelClient } from '../../src/relay/tunnel-client.ts'

const PROTOCOL = '/spareband-test/abandon/1.0.0'

/**
 * A client that leaves while its tunnel is being set up: the tunnel is
 * abandoned, and it must let go of its accounting session, or the session
 * is never closed (no final receipt, the same id for ever). Real libp2p
 * nodes on loopback, a real ConsumerSessions and ledger.
 */
describe('Ingress.abandon', () => {
  const cleanup: Array<() => Promise<void> | void> = []
  afterEach(async () => { for (const c of cleanup.splice(0).reverse()) await c() })

  it('ends the stream and releases the session, which then closes when idle', async () => {
    const [exit, consumerNode] = await Promise.all([loopbackNode(), loopbackNode()])
    cleanup.push(async () => exit.stop(), async () => consumerNode.stop())
    let aborted = false
    await exit.handle(PROTOCOL, stream => { stream.addEventListener('close', () => { aborted = stream.status !== 'closed' }) })
    const ledger = Ledger.open(':memory:', { selfPeerId: consumerNode.peerId })
    cleanup.push(() => ledger.close())
    let clock = 1_700_000_000_000
    const accounting = new ConsumerSessions({ logger: defaultLogger(), dialProtocol: async (peer, protocol, options) => consumerNode.dialProtocol(peer, protocol, options) },
      { ledger, privateKey: await generateKeyPair('Ed25519'), now: () => clock, sessionIdleMs: 1000 })
    // the tunnel client is not asked for anything here: abandon() works on a tunnel already opened
    const ingress = new Ingress({ client: undefined as unknown as TunnelClient, credentials: {}, log: defaultLogger().forComponent('test'), accounting })
    const sessionId = accounting.sessionFor(exit.peerId)
    const stream = await consumerNode.dialProtocol(exit.getMultiaddrs()[0], PROTOCOL)
    ingress.abandon({ stream, sessionId, rest: new Uint8ArrayList(), exit: exit.peerId, setupMs: 0 }, new Error('client went away'))
    expect(stream.status).not.toBe('open')
    const current = (): string | undefined => (accounting as any).sessions.get(exit.peerId.toString())?.id
    expect(current()).toBe(sessionId)
    clock += 5000
    ;(accounting as any).tick()
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(current()).toBeUndefined()
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(aborted).toBe(true)
  })
})
