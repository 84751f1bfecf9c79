import { describe, it, expect } from 'vitest'
import { createSocket } from 'node:dgram'
import { checkUdpListenPorts, explainListenFailure } from '../../src/node/libp2p.ts'
import type { Socket } from 'node:dgram'

async function holdUdp (host = '127.0.0.1'): Promise<{ socket: Socket, port: number }> {
  const socket = createSocket('udp4')
  await new Promise<void>(resolve => socket.bind(0, host, resolve))
  return { socket, port: socket.address().port }
}

describe('a webrtc-direct listen address whose UDP port is in use', () => {
  it('is an AddressInUseError naming the address and the setting, before libp2p tries it', async () => {
    const { socket, port } = await holdUdp()
    try {
      const addr = `/ip4/127.0.0.1/udp/${port}/webrtc-direct`
      const err = await checkUdpListenPorts(['/ip4/127.0.0.1/tcp/0', addr]).catch(e => e)
      expect(err).toHaveProperty('name', 'AddressInUseError')
      expect(err.address).toBe(addr)
      expect(err.message).toBe(`the node's listen address (listen / --listen): ${addr} is in use`)
      // the wildcard address clashes with a port held on loopback, as the bind would
      await expect(checkUdpListenPorts([`/ip4/0.0.0.0/udp/${port}/webrtc-direct`])).rejects.toHaveProperty('name', 'AddressInUseError')
    } finally {
      socket.close()
    }
  })

  it('passes free ports and port 0, and leaves them free', async () => {
    const { socket, port } = await holdUdp()
    socket.close()
    const listen = [`/ip4/127.0.0.1/udp/${port}/webrtc-direct`, '/ip4/127.0.0.1/udp/0/webrtc-direct', '/p2p-circuit']
    await checkUdpListenPorts(listen)
    const again = await holdUdp()
    again.socket.close()
    await checkUdpListenPorts(listen)
  })

  it('the native library\'s bare failure (a port taken after the check) names the webrtc-direct listen addresses', () => {
    const native = new Error('Failed to register ICE UDP mux listener')
    const err = explainListenFailure(native, ['/ip4/0.0.0.0/tcp/4001', '/ip4/0.0.0.0/udp/4001/webrtc-direct', '/p2p-circuit']) as Error
    expect(err.message).toBe("the node's listen address (listen / --listen): /ip4/0.0.0.0/udp/4001/webrtc-direct: its UDP port could not be opened (the WebRTC library says: Failed to register ICE UDP mux listener; its log above says why)")
    expect(err.cause).toBe(native)
    // anything else is left as it is
    const other = new Error('something else')
    expect(explainListenFailure(other, ['/ip4/0.0.0.0/udp/4001/webrtc-direct'])).toBe(other)
  })
})
