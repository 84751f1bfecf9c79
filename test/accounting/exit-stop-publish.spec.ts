/**
 * An exit that stops in the middle of a transfer gets every receipt it
 * countersigned out on gossip: the rest of the network credits it with all
 * it carried, not with what it had published before the stop began. (Its
 * tunnels used to run on while accounting published its "final" receipts,
 * and receipts countersigned after those were stored but never published.)
 */

import { afterEach, expect, it } from 'vitest'
import { startOrigin } from '../../simulations/lib/origin.ts'
import { SimNetwork, until } from '../../simulations/lib/network.ts'
import { fetchThrough } from '../../simulations/lib/demand.ts'
import { readLedgerView } from '../../simulations/lib/ledger-view.ts'
import { settleGossip } from '../../simulations/lib/scenario.ts'
import type { Origin } from '../../simulations/lib/origin.ts'

let net: SimNetwork | undefined
let origin: Origin | undefined

afterEach(async () => {
  await net?.stop()
  await net?.remove()
  await origin?.close()
})

it('an exit stopped mid-transfer publishes every receipt it countersigned', async () => {
  origin = await startOrigin([64 * 2 ** 20])
  net = await SimNetwork.start({ regions: ['de'], exitsPerRegion: 1, consumers: 1 }, origin.port)
  const [exit] = net.exits
  const [consumer] = net.consumers
  const transfer = fetchThrough(consumer, origin.port, 'de', 0, origin.objects[0], 60_000)
  // several receipts in, the transfer still running
  await until(() => (exit.node.status().exit?.bytesOut ?? 0) > 6 * 2 ** 20, 30_000, 'the transfer to pass 6 MiB')
  await net.stopNode(exit)
  const attempt = await transfer
  expect(attempt.ok).toBe(false)
  // the consumer's last receipts reach the stopped exit's ledger or nowhere; let the gossip settle
  await until(() => (net!.observer.node.status().accounting?.gossip.accepted ?? 0) > 0, 30_000, 'a first receipt at the observer')
  await settleGossip(net.observer)
  await net.stop()
  const own = (await readLedgerView(net, exit)).peers.find(p => p.name === exit.name)!
  const observed = (await readLedgerView(net, net.observer)).peers.find(p => p.name === exit.name)!
  expect(own.bytesCarried).toBeGreaterThan(4n * 2n ** 20n)
  expect(observed.bytesCarried).toBe(own.bytesCarried)
  expect(observed.earnedMicro + observed.unpaidMicro).toBe(own.earnedMicro + own.unpaidMicro)
}, 120_000)
