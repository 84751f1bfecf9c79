/**
 * The relay every node runs drops a reservation with its peer's last
 * connection: js-libp2p kept it for its 2 h lifetime, so 32 throw-away
 * identities that reserved and left filled a relay (max_reservations) for
 * everyone else. Real nodes on loopback: a relay and exits that listen
 * through it.
 */

import { afterAll, expect, it } from 'vitest'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { SparebandConfigInput, SparebandNode } from '../../src/index.ts'

const nodes: SparebandNode[] = []
afterAll(async () => { for (const n of nodes.reverse()) await n.stop().catch(() => {}) })

const base = { api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } }

async function start (config: Record<string, unknown>): Promise<SparebandNode> {
  const node = await createSparebandNode({ dataDir: await tempDir('sb-relay-res-'), config: { ...base, ...config } as SparebandConfigInput })
  nodes.push(node)
  await node.start()
  return node
}

it('a reservation goes with its peer, and its slot is free for the next one at once', async () => {
  // a relay with room for one reservation
  const relay = await start({ listen: ['/ip4/127.0.0.1/tcp/0'], exit: { enabled: false }, relay: { max_reservations: 1 } })
  const relayAddr = relay.status().addresses[0]
  const reservations = (): number => relay.status().relayService!.reservations

  const first = await start({ region: 'de', listen: [`${relayAddr}/p2p-circuit`] })
  await waitFor(() => reservations() === 1, { what: 'the first exit\'s reservation' })
  await first.stop()
  await waitFor(() => reservations() === 0, { what: 'the reservation to go with its peer', timeoutMs: 5000 })

  // the slot is free: a second exit reserves on the full-sized relay
  const second = await start({ region: 'de', listen: [`${relayAddr}/p2p-circuit`] })
  await waitFor(() => second.status().relays?.[0]?.reserved === true, { what: 'the second exit\'s reservation', timeoutMs: 15_000 })
  expect(reservations()).toBe(1)
}, 40_000)
