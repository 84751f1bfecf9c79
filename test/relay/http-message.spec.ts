import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { RequestBodyFramer, ResponseHeadRewriter } from '../../src/relay/http-message.ts'
import { parseRequestHead } from '../../src/relay/http-proxy-protocol.ts'

const enc = (text: string): Uint8Array => Buffer.from(text, 'latin1')
const dec = (bytes: Uint8Array | { subarray: () => Uint8Array }): string => Buffer.from(bytes instanceof Uint8Array ? bytes : bytes.subarray()).toString('latin1')

/** Cuts `bytes` at the given positions. */
function split (bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map(c => c % (bytes.byteLength + 1)))].sort((a, b) => a - b)
  const parts: Uint8Array[] = []
  let from = 0
  for (const c of [...at, bytes.byteLength]) {
    parts.push(bytes.subarray(from, c))
    from = c
  }
  return parts
}

/** What a framer for `head` forwards of `rest` fed in `parts`, and what it drops. */
function frame (head: string, rest: string, cuts: number[]): { forwarded: string, excess: number, done: boolean } {
  const parsed = parseRequestHead(enc(head))!
  const framer = new RequestBodyFramer(parsed)
  let forwarded = ''
  for (const part of split(enc(rest), cuts)) forwarded += dec(framer.take(part))
  return { forwarded, excess: framer.excess, done: framer.done }
}

const NEXT = 'GET http://other.example/ HTTP/1.1\r\nhost: other.example\r\nproxy-authorization: Basic c2VjcmV0\r\n\r\n'

describe('RequestBodyFramer', () => {
  const chunkedBody = '5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: t\r\n\r\n'
  const cases: Array<[string, string, string]> = [
    ['no body', 'GET http://a/ HTTP/1.1\r\nhost: a\r\n\r\n', ''],
    ['Content-Length', 'POST http://a/ HTTP/1.1\r\nhost: a\r\ncontent-length: 11\r\n\r\n', 'hello world'],
    ['chunked, with extensions and trailers', 'POST http://a/ HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n', chunkedBody],
    ['chunked, no trailers', 'POST http://a/ HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n', '3\r\nabc\r\n0\r\n\r\n']
  ]

  it.each(cases)('%s: forwards the body and nothing after it, however the bytes are cut', (_what, head, body) => {
    fc.assert(fc.property(fc.array(fc.nat(), { maxLength: 12 }), cuts => {
      const r = frame(head, body + NEXT, cuts)
      expect(r.forwarded).toBe(body)
      expect(r.excess).toBe(NEXT.length)
      expect(r.done).toBe(true)
    }))
  })

  it('waits for the rest of a body that has not all come', () => {
    const r = frame('POST http://a/ HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n', 'x'.repeat(40), [])
    expect(r).toEqual({ forwarded: 'x'.repeat(40), excess: 0, done: false })
  })

  it('follows Transfer-Encoding as the origin will: empty list elements ignored, leading zeros in chunk sizes', () => {
    const next = frame('POST http://a/ HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked,\r\n\r\n', '3\r\nabc\r\n0\r\n\r\n' + NEXT, [5])
    expect(next.forwarded).toBe('3\r\nabc\r\n0\r\n\r\n')
    expect(next.excess).toBe(NEXT.length)
    const body = '0000000000000000A\r\n0123456789\r\n0\r\n\r\n'
    const zeros = frame('POST http://a/ HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n', body + NEXT, [3, 20])
    expect(zeros.forwarded).toBe(body)
    expect(zeros.done).toBe(true)
  })

  it('refuses, when the head is parsed, a body whose last transfer coding is not chunked', () => {
    for (const te of ['gzip', 'chunked, gzip', 'identity']) {
      expect(() => parseRequestHead(enc(`POST http://a/ HTTP/1.1\r\nhost: a\r\ntransfer-encoding: ${te}\r\n\r\n`)), te).toThrow(/must end with chunked/)
    }
  })

  it('forwards nothing more after a chunk size it cannot read: what follows could be a next request', () => {
    for (const line of ['zz', '1234567890abcdef0']) {
      const r = frame('POST http://a/ HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n', `${line}\r\nabc` + NEXT, [])
      expect(r.forwarded, line).toBe(`${line}\r\n`)
      expect(r.done).toBe(true)
      expect(r.excess).toBe(3 + NEXT.length)
    }
  })
})

describe('ResponseHeadRewriter', () => {
  const rewrite = (response: string, cuts: number[]): string => {
    const rewriter = new ResponseHeadRewriter()
    return split(enc(response), cuts).map(part => dec(rewriter.push(part))).join('')
  }

  it('asks the client to close, drops the hop-by-hop headers, and keeps the body as it came, however the bytes are cut', () => {
    const response = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nX-Kept: 2\r\n\r\nhello'
    const expected = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kept: 2\r\nConnection: close\r\nProxy-Connection: close\r\n\r\nhello'
    fc.assert(fc.property(fc.array(fc.nat(), { maxLength: 10 }), cuts => { expect(rewrite(response, cuts)).toBe(expected) }))
  })

  it('lets interim 100 Continue through and rewrites the final head after it', () => {
    const out = rewrite('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n', [30])
    expect(out).toBe('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\nConnection: close\r\nProxy-Connection: close\r\n\r\n')
  })

  it('passes at once what does not start as a response, rather than wait for a head', () => {
    const rewriter = new ResponseHeadRewriter()
    expect(dec(rewriter.push(enc('SSH-2.0-OpenSSH_9.6\r\n')))).toBe('SSH-2.0-OpenSSH_9.6\r\n')
    const partial = new ResponseHeadRewriter()
    expect(dec(partial.push(enc('HTT')))).toBe('')
    expect(dec(partial.push(enc('P/1.1 200 OK\r\n\r\nx')))).toBe('HTTP/1.1 200 OK\r\nConnection: close\r\nProxy-Connection: close\r\n\r\nx')
  })

  it('leaves alone what it cannot read as a response head, and what follows a 101', () => {
    expect(rewrite('SSH-2.0-OpenSSH\r\n\r\nHTTP/1.1 200 OK\r\n\r\n', [])).toBe('SSH-2.0-OpenSSH\r\n\r\nHTTP/1.1 200 OK\r\n\r\n')
    expect(rewrite('HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n', [])).toBe('HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n')
  })
})
