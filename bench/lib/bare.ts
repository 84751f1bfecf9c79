/**
 * A bare libp2p node (TCP, noise, yamux with the node's stream options, no
 * services) and a byte-source protocol on it: the baseline a tunnel is
 * compared against.
 */

import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { noiseCrypto } from '../../src/node/noise-crypto.ts'
import { yamux } from '@libp2p/yamux'
import { batchedYamux } from '../../src/node/yamux-window.ts'
import { STREAM_READ_BUFFER, YAMUX_MAX_WINDOW } from '../../src/node/libp2p.ts'
import { waitForDrain } from '../../src/relay/tunnel-protocol.ts'
import { Receiver, chunks } from './data.ts'
import type { Libp2p, PrivateKey, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Ask for N bytes (8-byte big-endian length), get N payload bytes, then FIN. */
export const SOURCE_PROTOCOL = '/spareband-bench/source/1.0.0'

/**
 * Which yamux: 'node' as a spareband node runs it (window updates at half
 * the window), or 'stock' @libp2p/yamux (an update per frame received), to
 * show what the node's transport gains over plain js-libp2p.
 */
export type Muxer = 'node' | 'stock'

export async function createBareNode (muxer: Muxer = 'node'): Promise<Libp2p> {
  const node = await createLoopbackNode(undefined, muxer)
  await node.handle(SOURCE_PROTOCOL, stream => {
    serveSource(stream).catch(err => stream.abort(err))
  })
  return node
}

/** TCP on loopback, noise with the node's crypto provider, yamux as the node runs it (its stream options, window updates at half the window); no services. */
export async function createLoopbackNode (privateKey?: PrivateKey, muxer: Muxer = 'node'): Promise<Libp2p> {
  const streamOptions = { maxReadBufferLength: STREAM_READ_BUFFER, maxStreamWindowSize: YAMUX_MAX_WINDOW }
  return createLibp2p({
    ...(privateKey != null ? { privateKey } : {}),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    // the node's stream options: the baseline is the transport as a node runs it (yamux's 16 MiB default window is
    // 5-10 % faster here for one bulk stream, and slower for tunnels, which is why nodes cap it)
    streamMuxers: [muxer === 'node' ? batchedYamux({ streamOptions }) : yamux({ streamOptions })]
  })
}

async function serveSource (stream: Stream): Promise<void> {
  const total = await new Promise<number>((resolve, reject) => {
    const parts: Uint8Array[] = []
    let n = 0
    const onMessage = (evt: any): void => {
      const data = evt.data
      for (const b of (data instanceof Uint8Array ? [data] : data)) { parts.push(b); n += b.byteLength }
      if (n >= 8) {
        stream.removeEventListener('message', onMessage)
        resolve(Number(Buffer.concat(parts).readBigUInt64BE(0)))
      }
    }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('close', () => reject(new Error('stream closed before the request')), { once: true })
  })
  for (const c of chunks(total)) {
    if (!stream.send(c)) await waitForDrain(stream)
  }
  await stream.close()
}

export interface Transfer { bytes: number, sha256: string, ms: number }

/** Pulls `total` bytes from a node serving SOURCE_PROTOCOL at `addr`, counting and hashing them. */
export async function pullFromSource (node: Libp2p, addr: Multiaddr, total: number): Promise<Transfer> {
  const stream = await node.dialProtocol(addr, SOURCE_PROTOCOL)
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, STREAM_READ_BUFFER)
  const rx = new Receiver()
  const req = Buffer.alloc(8)
  req.writeBigUInt64BE(BigInt(total))
  const started = performance.now()
  await new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', evt => {
      const data = evt.data
      if (data instanceof Uint8Array) rx.update(data)
      else for (const b of data) rx.update(b)
    })
    stream.addEventListener('remoteCloseWrite', () => resolve())
    stream.addEventListener('close', evt => { if (evt.error != null) reject(evt.error); else resolve() })
    stream.send(req)
  })
  const ms = performance.now() - started
  await stream.close().catch(() => {})
  return { bytes: rx.bytes, sha256: rx.digest(), ms }
}
