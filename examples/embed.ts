/**
 * An app embedding a spareband node: start it, print what it knows, watch
 * peers come and go, stop it cleanly.
 *
 *   npm run example -- [--data-dir DIR] [--bootstrap MULTIADDR] [--run-seconds N]
 *
 * (the script builds and runs `node dist/examples/embed.js` on the Node.js
 * the repository pins: the package needs 22.13 or newer, for node:sqlite).
 * Without --data-dir the node runs in a new temporary directory, removed
 * when it stops.
 */

import { parseArgs } from 'node:util'
import { mkdtemp, rm } from 'node:fs/promises'
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

const temporary = values['data-dir'] == null
const dataDir = values['data-dir'] ?? await mkdtemp(join(tmpdir(), 'spareband-embed-'))
/** A directory made for this run goes with it; one the user named stays. */
const removeTemporary = async (): Promise<void> => {
  // after node.stop(), which closes the ledger; retried, as the ledger's files may still be going
  if (temporary) await rm(dataDir, { recursive: true, force: true, maxRetries: 5 })
}

const node = await createSparebandNode({
  dataDir,
  config: {
    region: 'de',
    listen: ['/ip4/127.0.0.1/tcp/0'],
    api: { port: 0 },
    proxy: { socks_port: 0, http_port: 0 },
    network: { bootstrap: values.bootstrap, local_testnet: true }
  }
}).catch(async err => { await removeTemporary(); throw err })

node.addEventListener('peer:connect', e => { console.log(JSON.stringify({ event: 'peer:connect', peerId: e.detail.peerId })) })
node.addEventListener('peer:disconnect', e => { console.log(JSON.stringify({ event: 'peer:disconnect', peerId: e.detail.peerId })) })
try {
  await node.start()
} catch (err) {
  await node.stop()
  await removeTemporary()
  throw err
}
console.log(JSON.stringify({ event: 'started', status: node.status() }))

const seconds = Number(values['run-seconds'])
const stop = async (): Promise<void> => {
  await node.stop()
  await removeTemporary()
  console.log(JSON.stringify({ event: 'stopped' }))
  process.exit(0)
}
process.once('SIGINT', () => { void stop() })
process.once('SIGTERM', () => { void stop() })
if (seconds > 0) setTimeout(() => { void stop() }, seconds * 1000)
