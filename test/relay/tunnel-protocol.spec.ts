import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { Uint8ArrayList } from 'uint8arraylist'
import { TunnelRequest, TunnelResponse, TunnelStatus, decodeTunnelRequest, decodeTunnelResponse, encodeFrame, splitFrame, MAX_FRAME_BYTES } from '../../src/relay/tunnel-protocol.ts'

describe('tunnel protocol frames', () => {
  it('round-trips a request and keeps the bytes behind the frame', () => {
    const req = TunnelRequest.encode({ sessionId: 's1', targetHost: 'example.org', targetPort: 443 })
    const buf = new Uint8ArrayList(encodeFrame(req), Uint8Array.from([1, 2, 3]))
    const r = splitFrame(buf)!
    expect(decodeTunnelRequest(r.frame)).toEqual({ sessionId: 's1', host: 'example.org', port: 443 })
    expect(r.rest.subarray()).toEqual(Uint8Array.from([1, 2, 3]))
  })

  it('waits for more bytes while a frame is incomplete, at every cut', () => {
    const whole = encodeFrame(TunnelRequest.encode({ targetHost: 'a.example', targetPort: 80 })).subarray()
    for (let i = 0; i < whole.byteLength; i++) expect(splitFrame(new Uint8ArrayList(whole.subarray(0, i)))).toBeUndefined()
  })

  it('rejects oversized frames, missing fields and bad ports with TunnelProtocolError', () => {
    const big = new Uint8ArrayList(Uint8Array.from([0xff, 0xff, 0x03]))
    expect(() => splitFrame(big)).toThrow(expect.objectContaining({ name: 'TunnelProtocolError' }))
    expect(() => decodeTunnelRequest(TunnelRequest.encode({ targetPort: 80 }))).toThrow(/target_host/)
    expect(() => decodeTunnelRequest(TunnelRequest.encode({ targetHost: 'x', targetPort: 0 }))).toThrow(/target_port/)
    expect(() => decodeTunnelRequest(TunnelRequest.encode({ targetHost: 'x', targetPort: 70000 }))).toThrow(/target_port/)
    expect(() => decodeTunnelResponse(TunnelResponse.encode({ message: 'no status' }))).toThrow(/status/)
    expect(decodeTunnelResponse(TunnelResponse.encode({ status: TunnelStatus.BUSY, message: 'm' }))).toEqual({ status: TunnelStatus.BUSY, message: 'm' })
  })

  it('takes host names and IP literals as targets, and nothing else: no NUL, line break, space or non-ASCII from a peer reaches the resolver or a log', () => {
    const host = (targetHost: string): string => decodeTunnelRequest(TunnelRequest.encode({ targetHost, targetPort: 443 })).host
    for (const ok of ['example.org', 'EXAMPLE.org.', '_srv.example-1.org', 'xn--bcher-kva.example', '93.184.216.34', '127.1', '0x7f.1', '2130706433', '::1', '[::1]', '::ffff:127.0.0.1', '[2001:db8::1]']) {
      expect(host(ok), ok).toBe(ok)
    }
    for (const ok of ['localhost.', 'a'.repeat(63) + '.example', `${'a.'.repeat(126)}b`]) expect(host(ok), ok).toBe(ok)
    for (const bad of ['exa\u0000mple.org', 'example.org\r\n', 'exa mple.org', 'bücher.example', 'a/b', 'user@example.org', 'example.org:443', 'face.cafe:443', '::1]', '[::1', '[example.org]',
      '.', '..', 'a..b', '.example.org', 'a'.repeat(64) + '.example', `${'a.'.repeat(127)}b`, '[127.0.0.1]', '::1%lo', '[fe80::1%eth0]']) {
      expect(() => host(bad), JSON.stringify(bad)).toThrow(/target_host is neither a host name .* nor an IP address \(no zone\)/)
    }
  })

  it('fuzz: any bytes give a frame, "need more", or TunnelProtocolError; never another error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), bytes => {
      try {
        const r = splitFrame(new Uint8ArrayList(bytes))
        if (r != null) {
          expect(r.frame.byteLength).toBeLessThanOrEqual(MAX_FRAME_BYTES)
          try { decodeTunnelRequest(r.frame) } catch (err: any) { expect(err.name).toBe('TunnelProtocolError') }
          try { decodeTunnelResponse(r.frame) } catch (err: any) { expect(err.name).toBe('TunnelProtocolError') }
        }
      } catch (err: any) {
        expect(err.name).toBe('TunnelProtocolError')
      }
    }), { numRuns: 2000 })
  })

  it('fuzz: mutated valid requests decode or fail cleanly', () => {
    const valid = TunnelRequest.encode({ sessionId: 'abc', targetHost: 'host.example', targetPort: 8080 })
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(valid.byteLength - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), muts => {
      const b = Uint8Array.from(valid)
      for (const [i, v] of muts) b[i] = v
      try {
        const r = decodeTunnelRequest(b)
        expect(r.port).toBeGreaterThanOrEqual(1)
        expect(r.port).toBeLessThanOrEqual(65535)
      } catch (err: any) {
        expect(err.name).toBe('TunnelProtocolError')
      }
    }), { numRuns: 2000 })
  })
})
