/**
 * An exit that is stopping takes no new tunnel, not even on a stream its
 * consumer opened ahead of need (warm), and a consumer whose tunnel was
 * being set up when it stopped is told BUSY at once (it tries another exit)
 * instead of waiting out the answer timeout.
 */

import { afterEach, expect, it } from 'vitest'
import { startEchoServer, startExitAndConsumer } from '../utils/in-process.ts'
import { startClosedDoor } from '../utils/target-server.ts'
import { TunnelRefusedError } from '../../src/index.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { NodePart } from '../../src/node/spareband-node.ts'
import type { AccountingPart } from '../../src/node/accounting-part.ts'
import { ReputationObserver } from '../../src/accounting/reputation-observer.ts'
import { EXIT_STOPPING } from '../../src/relay/tunnel-client.ts'
import type { EchoServer } from '../utils/in-process.ts'
import type { ClosedDoor } from '../utils/target-server.ts'

let echo: EchoServer | undefined
let door: ClosedDoor | undefined
let nodes: SparebandNode[] = []

afterEach(async () => {
  for (const n of nodes) await n.stop()
  nodes = []
  await echo?.close()
  await door?.close()
  echo = door = undefined
})

async function roundTrip (node: SparebandNode, port: number): Promise<string> {
  const socket = await node.connect('127.0.0.1', port, { region: 'de' })
  return new Promise((resolve, reject) => {
    socket.once('data', (d: Buffer) => { socket.destroy(); resolve(d.toString()) })
    socket.once('error', reject)
    socket.write('ping')
  })
}

it('takes no new tunnel once its exit part stopped, warm streams included', async () => {
  echo = await startEchoServer()
  const { exit, consumer } = await startExitAndConsumer([echo.port])
  nodes = [consumer, exit]
  // a first tunnel, so the consumer keeps streams to the exit open ahead of need
  expect(await roundTrip(consumer, echo.port)).toBe('ping')
  await expect.poll(() => consumer.status().proxy?.warmStreams.ready ?? 0).toBeGreaterThan(0)
  const before = exit.status().exit!.tunnelsTotal
  // the first step of the exit node's stop(): the parts after it (accounting, libp2p) still run
  await exit.part<NodePart>('exit')!.stop!()
  const result = await roundTrip(consumer, echo.port).then(r => `carried ${r}`, (err: Error) => err.name)
  expect(result).not.toMatch(/^carried/)
  expect(exit.status().exit!.tunnelsTotal).toBe(before)
})

it('answers BUSY to a tunnel whose target connect was under way when it stopped', async () => {
  door = await startClosedDoor()
  const { exit, consumer } = await startExitAndConsumer([door.port], { exit: { connect_timeout_seconds: 30 } })
  nodes = [consumer, exit]
  const started = performance.now()
  const attempt = consumer.connect('127.0.0.1', door.port, { region: 'de' }).then(s => { s.destroy(); return 'opened' }, (err: any) => err)
  await expect.poll(() => exit.status().exit!.tunnelsConnecting).toBe(1)
  await exit.part<NodePart>('exit')!.stop!()
  const err = await attempt
  expect(err).toBeInstanceOf(TunnelRefusedError)
  expect((err as TunnelRefusedError).status).toBe('BUSY')
  // told at once, not after the consumer's 15 s wait for an answer
  expect(performance.now() - started).toBeLessThan(10_000)
  // a planned stop: the consumer's reputation reports do not count it against the exit
  const observed = consumer.part<AccountingPart>('accounting')!.reputation.observer.due(Date.now(), 0)
  expect(observed.find(o => o.exit === exit.peerId.toString())?.failures ?? 0).toBe(0)
})

it('the reputation observer counts BUSY against an exit, but not a stop its operator asked for', () => {
  const observer = new ReputationObserver()
  observer.observe('a', false, 'BUSY', Date.now())
  observer.observe('b', false, EXIT_STOPPING, Date.now())
  const due = observer.due(Date.now(), 0)
  expect(due.map(o => [o.exit, o.failures])).toEqual([['a', 1]])
})
