/**
 * The simulation's origin: a plain HTTP server on 127.0.0.1 that serves a
 * few random objects by index. The driver knows each object's SHA-256, so
 * every byte that came back through an exit is checked, not only counted.
 */

import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface OriginObject {
  bytes: Buffer
  sha256: string
}

export interface Origin {
  port: number
  objects: OriginObject[]
  /** Requests answered so far. */
  served: number
  close: () => Promise<void>
}

/** `sizes[i]` bytes of random data at `/obj/<i>`; anything else is a 404. */
export async function startOrigin (sizes: number[]): Promise<Origin> {
  const objects = sizes.map(n => {
    const bytes = randomBytes(n)
    return { bytes, sha256: createHash('sha256').update(bytes).digest('hex') }
  })
  const origin: Origin = { port: 0, objects, served: 0, close: async () => {} }
  const server = createServer((req, res) => {
    const m = /^\/obj\/(\d+)$/.exec(req.url ?? '')
    const object = m == null ? undefined : objects[Number(m[1])]
    if (object == null) {
      res.writeHead(404).end()
      return
    }
    origin.served++
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': object.bytes.byteLength })
    res.end(object.bytes)
  })
  server.keepAliveTimeout = 1000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  origin.port = (server.address() as AddressInfo).port
  origin.close = async () => {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  return origin
}
