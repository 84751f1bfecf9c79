/**
 * A peer that connects and leaves in a loop cannot fill the disk through
 * the node's log: 'peer connected' and 'peer disconnected' lines are capped
 * at 30 a minute each (a loop wrote 65 KB/s), the count of those held back
 * going with the next line shown. A real node process, a real libp2p peer
 * dialling it over TCP on loopback.
 */

import { afterAll, expect, it } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { NodeProcess, tempDir, waitFor } from '../utils/cli.ts'
import { createIdentity } from '../../src/node/identity.ts'
import { loopbackNode } from '../utils/libp2p.ts'
import type { Libp2p } from '@libp2p/interface'

const procs: NodeProcess[] = []
const peers: Libp2p[] = []
afterAll(async () => {
  for (const p of peers) await p.stop()
  for (const p of procs) await p.kill()
})

it('caps the connect and disconnect lines at 30 a minute each, however fast a peer comes and goes', async () => {
  const d = await tempDir('sb-peer-log-')
  await createIdentity(d)
  const node = new NodeProcess(d, ['--network', 'local', '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', '0', '--socks-port', '0', '--http-port', '0', '--no-supply'])
  procs.push(node)
  await node.ready()
  const addr = multiaddr((await node.status()).addresses[0])
  const peer = await loopbackNode()
  peers.push(peer)
  for (let i = 0; i < 45; i++) {
    await peer.dial(addr)
    await peer.hangUp(addr)
  }
  const lines = (what: string): string[] => node.output.split('\n').filter(l => new RegExp(` info +${what} peer=`).test(l))
  await waitFor(() => lines('peer disconnected').length === 30, { what: 'the disconnect lines', timeoutMs: 10_000 })
  expect(lines('peer connected')).toHaveLength(30)
  // nothing held back is shown yet: the next line, a minute on, would carry the count
  expect(node.output).not.toContain('notShown')
}, 60_000)
