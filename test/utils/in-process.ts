/**
 * Real nodes and servers in the test's own process: an echo server that
 * counts its open connections, and an exit with a consumer that has
 * identified it and solved its proof of work.
 */

import { createServer } from 'node:net'
import { afterAll, beforeAll } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir, waitFor } from './cli.ts'
import type { SparebandNode, SparebandConfigInput } from '../../src/index.ts'
import type { AddressInfo, Server, Socket } from 'node:net'

export interface EchoServer {
  server: Server
  port: number
  /** Connections open now: a test can see the target side close. */
  sockets: Set<Socket>
  close: () => Promise<void>
}

/** A TCP echo on 127.0.0.1 that keeps half-closed connections open (the client's FIN ends only its way). */
export async function startEchoServer (): Promise<EchoServer> {
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, s => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    s.pipe(s)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

/**
 * An exit in region de that may reach `ports` on this machine, and a
 * consumer (no exit of its own) that has identified it and solved its
 * proof of work. A light proof of work (8 bits): with the default (about a
 * second), a consumer that has spent anything is refused until its
 * allowance is known, which races tests. `exit` and `consumer` add to each
 * node's config (the consumer's exit section still sets idle timeouts),
 * `accounting` to both.
 */
export async function startExitAndConsumer (ports: number[], extra: { exit?: Record<string, unknown>, consumerExit?: Record<string, unknown>, accounting?: Record<string, unknown>, dataDirPrefix?: string } = {}): Promise<{ exit: SparebandNode, consumer: SparebandNode }> {
  const base = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8, ...extra.accounting } }
  const prefix = extra.dataDirPrefix ?? 'sb-inproc-'
  const exit = await createSparebandNode({
    dataDir: await tempDir(prefix),
    config: { ...base, region: 'de', network: { local_testnet: true }, exit: { allow_private_targets: true, allowed_ports: ports, ...extra.exit } } as SparebandConfigInput
  })
  await exit.start()
  const consumer = await createSparebandNode({
    dataDir: await tempDir(prefix),
    config: { ...base, network: { local_testnet: true, bootstrap: exit.status().addresses }, exit: { enabled: false, ...extra.consumerExit } } as SparebandConfigInput
  })
  await consumer.start()
  await waitFor(async () => (await consumer.peers()).some(p => p.agent?.includes('exit')), { what: 'identify' })
  await waitFor(() => (consumer.status() as any).accounting.proofOfWork.solved === true, { what: 'the consumer\'s proof of work' })
  return { exit, consumer }
}

/** An echo server, an exit and a consumer for a test file (or a describe), started before its tests and stopped after them. */
export interface ExitAndConsumerFixture { echo: EchoServer, exit: SparebandNode, consumer: SparebandNode }

/**
 * Registers beforeAll/afterAll that start an echo server and
 * startExitAndConsumer() on its port (`extra` as there), and stop them;
 * read the fields inside the tests.
 */
export function useExitAndConsumer (extra: Parameters<typeof startExitAndConsumer>[1] = {}): ExitAndConsumerFixture {
  const fixture = {} as ExitAndConsumerFixture
  beforeAll(async () => {
    fixture.echo = await startEchoServer()
    Object.assign(fixture, await startExitAndConsumer([fixture.echo.port], extra))
  })
  afterAll(async () => {
    await fixture.consumer?.stop()
    await fixture.exit?.stop()
    await fixture.echo?.close()
  })
  return fixture
}
