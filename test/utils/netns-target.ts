/**
 * The target server (target-server.ts) as a process of its own, for a test
 * that needs it in another network namespace:
 *
 *   ip netns exec NS node test/utils/netns-target.ts HOST BYTES
 *
 * Node runs this file as it is (type stripping), so it needs no build.
 * Prints one JSON line once it listens (`{ port, sha256 }`); each line
 * "report" on stdin is answered with one JSON line of what it has seen
 * (`{ connections, remotes, requests }`). It closes when stdin ends.
 */

import { createInterface } from 'node:readline'
import { startTargetServer } from './target-server.ts'

const [host = '127.0.0.1', bytes = String(64 * 1024 * 1024)] = process.argv.slice(2)
const target = await startTargetServer(Number(bytes), { host })
process.stdout.write(JSON.stringify({ port: target.port, sha256: target.blobSha256 }) + '\n')

const lines = createInterface({ input: process.stdin })
lines.on('line', line => {
  if (line.trim() === 'report') process.stdout.write(JSON.stringify({ connections: target.connections, remotes: target.remotes, requests: target.requests }) + '\n')
})
lines.on('close', () => { void target.close().finally(() => process.exit(0)) })
