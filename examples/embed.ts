/**
 * An app embedding a spareband node: start it, print what it knows, watch
 * peers come and go, stop it cleanly.
 *
 *   npm run build && node dist/examples/embed.js [--data-dir DIR] [--bootstrap MULTIADDR] [--run-seconds N]
 */

import { parseArgs } from 'node:util'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSparebandNode } from '../src/index.ts'

const { values } = parseArgs({
  options: {
    'data-dir': { type: 'string' },
    bootstrap: { type: 'string', multiple: true, default: [] },
    'run-seconds': { type: 'string', default: '0' }
  }
})

const dataDir = values['data-dir'] ?? await mkdtemp(join(tmpdir(), 'spareband-embed-'))
const node = await createSparebandNode({
  dataDir,
  config: {
    region: 'de',
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: { port: 0 },
    proxy: { socks_port: 0, http_port: 0 },
    network: { bootstrap: values.bootstrap, local_testnet: true }
  }
})

node.addEventListener('peer:connect', e => { console.log(JSON.stringify({ event: 'peer:connect', peerId: e.detail.peerId })) })
await node.start()
console.log(JSON.stringify({ event: 'started', status: node.status() }))

const seconds = Number(values['run-seconds'])
const stop = async (): Promise<void> => {
  await node.stop()
  console.log(JSON.stringify({ event: 'stopped' }))
  process.exit(0)
}
process.once('SIGINT', () => { void stop() })
process.once('SIGTERM', () => { void stop() })
if (seconds > 0) setTimeout(() => { void stop() }, seconds * 1000)
