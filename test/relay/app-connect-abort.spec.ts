import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { freePort, tempDir, waitFor } from '../utils/cli.ts'
import { startEchoServer, startExitAndConsumer } from '../utils/in-process.ts'
import { createSparebandNode } from '../../src/index.ts'
import type { EchoServer } from '../utils/in-process.ts'
import type { SparebandConfigInput, SparebandNode } from '../../src/index.ts'

/**
 * node.connect()'s AbortSignal while the tunnel is being set up: an exit
 * that allows one tunnel per consumer answers a second one RATE_LIMITED,
 * and the consumer asks again for up to 5 s. An app that gives up meanwhile
 * must hear so at once, not when the retries run out.
 */
describe('node.connect() with an AbortSignal', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let echo: EchoServer

  beforeAll(async () => {
    echo = await startEchoServer()
    ;({ exit, consumer } = await startExitAndConsumer([echo.port], { exit: { max_tunnels_per_consumer: 1 }, dataDirPrefix: 'sb-connect-abort-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    await echo?.close()
  })

  it('an abort during set-up rejects with the signal\'s reason at once, and leaves nothing open', async () => {
    const first = await consumer.connect('127.0.0.1', echo.port, { region: 'de' })
    first.on('error', () => {})
    await waitFor(() => (exit.status() as any).exit.tunnelsOpen === 1, { what: 'the first tunnel' })

    const controller = new AbortController()
    const started = Date.now()
    const second = consumer.connect('127.0.0.1', echo.port, { region: 'de', signal: controller.signal }).then(() => 'connected', err => err)
    setTimeout(() => { controller.abort() }, 300)
    const result = await second
    const tookMs = Date.now() - started
    expect(result).toHaveProperty('name', 'AbortError')
    expect(result).toBe(controller.signal.reason)
    // the exit keeps refusing for 5 s: an abort heard only then would take that long
    expect(tookMs).toBeLessThan(2000)
    expect((consumer.status() as any).proxy.tunnelsOpen).toBe(1)

    // the first tunnel still carries, and once it is gone a new one opens
    first.write('ping')
    const echoed = await new Promise<string>(resolve => first.once('data', (c: Buffer) => resolve(c.toString())))
    expect(echoed).toBe('ping')
    first.destroy()
    await waitFor(() => (exit.status() as any).exit.tunnelsOpen === 0 && echo.sockets.size === 0, { timeoutMs: 10_000, what: 'the first tunnel to close' })
    const third = await consumer.connect('127.0.0.1', echo.port, { region: 'de' })
    third.end('bye')
    const back = await new Promise<string>(resolve => {
      let text = ''
      third.on('data', (c: Buffer) => { text += c.toString() })
      third.on('end', () => resolve(text))
    })
    expect(back).toBe('bye')
  })

  it('a connect() under way when the node stops rejects with NotStartedError, not as an exit\'s refusal', async () => {
    const first = await consumer.connect('127.0.0.1', echo.port, { region: 'de' })
    first.on('error', () => {})
    await waitFor(() => (exit.status() as any).exit.tunnelsOpen === 1, { what: 'the first tunnel' })
    // refused RATE_LIMITED, and asked again for 5 s
    const pending = consumer.connect('127.0.0.1', echo.port, { region: 'de' }).then(() => 'connected', err => err)
    await new Promise(resolve => setTimeout(resolve, 300))
    const started = Date.now()
    await consumer.stop()
    const result = await pending
    expect(result).toHaveProperty('name', 'NotStartedError')
    expect(result.message).toMatch(/stopped/)
    expect(Date.now() - started).toBeLessThan(3000)
  })
})

describe('node.connect() aborted while the exit is connecting to the target', () => {
  it('rejects with the signal\'s reason and holds nothing against the exit: no failure in the reputation it reports', async () => {
    const { startBlackhole } = await import('../utils/target-server.ts')
    const hole = await startBlackhole()
    const echo = await startEchoServer()
    // the exit waits up to 10 s for a connect to the blackhole: the app gives up long before it answers
    const { exit, consumer } = await startExitAndConsumer([hole.port, echo.port], { dataDirPrefix: 'sb-connect-abort-hole-' })
    try {
      const ok = await consumer.connect('127.0.0.1', echo.port, { region: 'de', session: 's1' })
      ok.destroy()
      const controller = new AbortController()
      setTimeout(() => { controller.abort() }, 300)
      const result = await consumer.connect('127.0.0.1', hole.port, { region: 'de', session: 's1', signal: controller.signal }).then(() => 'connected', err => err)
      expect(result).toBe(controller.signal.reason)
      // what the consumer would report of the exit: the one tunnel it opened, no failure (it was NO_ANSWER, the exit's fault)
      const seen = (consumer.part('accounting') as any).reputation.observer.due(Date.now() + 3_600_000, 0)
      expect(seen.map((e: any) => [e.exit, e.successes, e.failures])).toEqual([[exit.peerId.toString(), 1, 0]])
    } finally {
      await consumer.stop()
      await exit.stop()
      await echo.close()
      await hole.close()
    }
  }, 60_000)
})

describe('node.connect() with an AbortSignal, while the exit search runs', () => {
  it('an abort during the DHT search for a region\'s exits rejects at once (a node with no peer searches for 15 s)', async () => {
    const { createSparebandNode } = await import('../../src/index.ts')
    const { tempDir } = await import('../utils/cli.ts')
    const lone = await createSparebandNode({
      dataDir: await tempDir('sb-connect-abort-lone-'),
      config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 }, exit: { enabled: false } }
    })
    await lone.start()
    try {
      const started = Date.now()
      const result = await lone.connect('127.0.0.1', 80, { region: 'de', signal: AbortSignal.timeout(300) }).then(() => 'connected', err => err)
      expect(result).toHaveProperty('name', 'TimeoutError')
      expect(Date.now() - started).toBeLessThan(2000)
    } finally {
      await lone.stop()
    }
  }, 30_000)
})

describe('node.connect() when the node stops', () => {
  it('a set-up still looking for its first peer rejects with NotStartedError as stop() runs, not at the lookup\'s timeout', async () => {
    // a bootstrap peer nobody listens for: the exit search waits for a first peer (up to 15 s)
    const nobody = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const node = await createSparebandNode({
      dataDir: await tempDir('sb-connect-stop-'),
      controlApi: false,
      config: {
        listen: ['/ip4/127.0.0.1/tcp/0'],
        proxy: { socks_port: 0, http_port: 0 },
        exit: { enabled: false },
        network: { local_testnet: true, bootstrap: [`/ip4/127.0.0.1/tcp/${await freePort()}/p2p/${nobody.toString()}`] }
      } as SparebandConfigInput
    })
    await node.start()
    const pending = node.connect('127.0.0.1', 80, { region: 'de' }).then(() => 'connected', (err: Error) => err)
    await new Promise(resolve => setTimeout(resolve, 500))
    const stopAt = Date.now()
    await node.stop()
    const result = await pending
    expect(result).toHaveProperty('name', 'NotStartedError')
    expect((result as Error).message).toContain('stopped while the tunnel was being set up')
    expect(Date.now() - stopAt).toBeLessThan(3_000)
  }, 30_000)
})
