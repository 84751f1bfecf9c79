/**
 * Child process of stop-timers.spec.ts: starts a node (an exit and a
 * consumer's proxies, as `spareband start` runs one), stops it, and then
 * should end by itself. Still here LINGER_MS later, it prints what keeps it
 * up and exits with 3. (Right after stop() a few handles are still closing,
 * and a queue's 1 ms timers run out: only what lasts counts.)
 */

import { tmpdir } from 'node:os'
import { mkdtemp } from 'node:fs/promises'
import { join } from 'node:path'
import { createSparebandNode } from '../../src/index.ts'

/** Under libp2p's own 1 s debounce, so a timer armed by the stop is still there when this looks. */
const LINGER_MS = 900

const node = await createSparebandNode({
  dataDir: await mkdtemp(join(tmpdir(), 'sb-stopped-')),
  config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, network: { local_testnet: true }, accounting: { pow_difficulty: 8 } }
})
await node.start()
// what a running node's first seconds arm (the first address update, identify) has run its course
await new Promise(resolve => setTimeout(resolve, 1500))
await node.stop()
process.stdout.write('stopped\n')
setTimeout(() => {
  process.stdout.write(`still up: ${JSON.stringify(process.getActiveResourcesInfo().filter(r => r !== 'PipeWrap' && r !== 'TTYWrap'))}\n`)
  process.exit(3)
}, LINGER_MS).unref()
