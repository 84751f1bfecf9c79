/**
 * One plain-HTTP request per tunnel, for the HTTP proxy's absolute-form
 * requests: where the request's body ends, and a response head that tells
 * the client not to reuse the connection.
 *
 * Why: a client keeps its connection to a proxy open and sends its next
 * request on it, often for another host. The tunnel goes to the first
 * request's origin, so without this a second request (with the client's
 * Proxy-Authorization and cookies for the other host) reached the first
 * origin, and its answer came back as if from the other host. Now only the
 * first request's bytes are forwarded (RequestBodyFramer), and the response
 * says `Connection: close` (ResponseHeadRewriter), so clients open a new
 * connection, and a new tunnel, for the next request.
 */

import { Uint8ArrayList } from 'uint8arraylist'
import type { RequestHead } from './http-proxy-protocol.ts'

const CR = 0x0d
const LF = 0x0a

/** Largest response head rewritten; a larger one passes unchanged (the client then decides). */
const MAX_RESPONSE_HEAD_BYTES = 64 * 1024
/** Longest chunk-size line (size, extensions) or trailer line read. */
const MAX_CHUNK_LINE = 4096

type ChunkedState = 'size' | 'data' | 'data-end' | 'trailer'

/**
 * Passes a request's body and nothing after it. The head's framing was
 * checked when it was parsed (one Content-Length, not with chunked).
 */
export class RequestBodyFramer {
  /** Body bytes still to pass, for a Content-Length body (or the current chunk's data). */
  private remaining = 0
  private readonly chunked: boolean
  private state: ChunkedState = 'size'
  private line = ''
  /** The body is over: what comes after it is not forwarded. */
  done = false
  /** Bytes that came after the body (a next request on the same connection). */
  excess = 0

  constructor (head: RequestHead) {
    // empty list elements are ignored (RFC 9110 §5.6.1), as the origin will
    const codings = head.headers.filter(([n]) => n === 'transfer-encoding').flatMap(([, v]) => v.split(',')).map(v => v.trim().toLowerCase()).filter(v => v !== '')
    const length = head.headers.find(([n]) => n === 'content-length')?.[1].split(',')[0].trim()
    this.chunked = codings.at(-1) === 'chunked'
    if (codings.length > 0 && !this.chunked) {
      // refused when the head was parsed (RFC 9112 §6.3: no length can be known); should one get here, forward no body
      this.done = true
    } else if (!this.chunked) {
      this.remaining = length == null ? 0 : Number(length)
      this.done = this.remaining === 0
    }
  }

  /** The part of `chunk` that belongs to the request; the rest is counted in `excess`. */
  take (chunk: Uint8Array): Uint8Array {
    if (this.done) {
      this.excess += chunk.byteLength
      return chunk.subarray(0, 0)
    }
    const end = this.chunked ? this.scanChunked(chunk) : Math.min(chunk.byteLength, this.remaining)
    if (!this.chunked) {
      this.remaining -= end
      if (this.remaining === 0) this.done = true
    }
    this.excess += chunk.byteLength - end
    return end === chunk.byteLength ? chunk : chunk.subarray(0, end)
  }

  /** Walks the chunked coding (RFC 9112 §7.1); returns how much of `chunk` is still body. */
  private scanChunked (chunk: Uint8Array): number {
    let i = 0
    while (i < chunk.byteLength && !this.done) {
      if (this.state === 'data') {
        const n = Math.min(this.remaining, chunk.byteLength - i)
        i += n
        this.remaining -= n
        if (this.remaining === 0) this.state = 'data-end'
        continue
      }
      const byte = chunk[i++]
      if (byte !== LF) {
        if (byte !== CR) this.line += String.fromCharCode(byte)
        // a line that never ends is not HTTP: pass the rest as it comes, the origin answers it
        if (this.line.length > MAX_CHUNK_LINE) this.giveUp()
        continue
      }
      const line = this.line
      this.line = ''
      if (this.state === 'size') {
        // leading zeros are allowed and say nothing; more than 15 digits after them is no chunk size of ours
        const size = /^0*([0-9a-fA-F]*)/.exec(line)!
        if (!/^[0-9a-fA-F]/.test(line) || size[1].length > 15) {
          this.giveUp()
          continue
        }
        this.remaining = size[1] === '' ? 0 : parseInt(size[1], 16)
        this.state = this.remaining === 0 ? 'trailer' : 'data'
      } else if (this.state === 'data-end') {
        this.state = 'size'
      } else if (line === '') {
        // the empty line after the last chunk's trailers ends the body
        this.done = true
      }
    }
    return i
  }

  /**
   * A body this cannot follow: nothing more is forwarded. Passing the rest
   * would pass whatever the client sends next, and a next request has no
   * business reaching this origin; the origin answers the cut body.
   */
  private giveUp (): void {
    this.done = true
  }
}

/** Header names a response head loses on its way to the client (hop by hop), and those its Connection names. */
function hopByHop (headers: Array<[string, string]>): Set<string> {
  const names = new Set(['connection', 'keep-alive', 'proxy-connection'])
  for (const [name, value] of headers) {
    if (name !== 'connection') continue
    for (const option of value.split(',')) {
      const lower = option.trim().toLowerCase()
      // framing must reach the client as the origin sent it
      if (lower !== '' && lower !== 'content-length' && lower !== 'transfer-encoding') names.add(lower)
    }
  }
  return names
}

/**
 * Rewrites the final response head (interim 1xx heads pass unchanged) so
 * it asks the client to close the connection; everything else passes as it
 * came. Anything it cannot read as a response head passes unchanged.
 */
export class ResponseHeadRewriter {
  private pending?: Uint8ArrayList = new Uint8ArrayList()
  /**
   * Bytes the rewritten heads have more than the origin's (fewer: negative).
   * They never crossed the tunnel, so the consumer's meter leaves them out:
   * its receipts then sign what the exit carried.
   */
  grown = 0

  /** `extra`: fields added to the final response's head (the proxy's own, such as the exit's peer id). */
  constructor (private readonly extra: Array<[string, string]> = []) {}

  /** The bytes to write to the client for `chunk` (none while a head is incomplete). */
  push (chunk: Uint8Array | Uint8ArrayList): Uint8Array | Uint8ArrayList {
    if (this.pending == null) return chunk
    this.pending.append(chunk)
    const out = new Uint8ArrayList()
    while (this.pending != null) {
      const bytes = this.pending.subarray()
      // not a response (a server of another protocol on port 80): pass it on as it comes, not held back for a head that will not come
      if (!startsLikeResponse(bytes)) {
        this.passRest(out)
        break
      }
      const end = headEnd(bytes)
      if (end < 0) {
        if (bytes.byteLength > MAX_RESPONSE_HEAD_BYTES) this.passRest(out)
        break
      }
      const head = rewriteHead(bytes.subarray(0, end), this.extra)
      if (head == null) {
        this.passRest(out)
        break
      }
      out.append(head.bytes)
      this.grown += head.bytes.byteLength - end
      this.pending.consume(end)
      if (!head.interim) this.passRest(out)
    }
    return out
  }

  /** What is held (a head the origin never finished): the stream has ended, so it goes as it is. */
  flush (): Uint8ArrayList | undefined {
    const rest = this.pending
    this.pending = undefined
    return rest
  }

  private passRest (out: Uint8ArrayList): void {
    if (this.pending != null) out.append(this.pending)
    this.pending = undefined
  }
}

const RESPONSE_START = Buffer.from('HTTP/1.', 'latin1')

/** Whether `bytes` start as a status line does (or are too few to tell). */
function startsLikeResponse (bytes: Uint8Array): boolean {
  const n = Math.min(bytes.byteLength, RESPONSE_START.byteLength)
  for (let i = 0; i < n; i++) if (bytes[i] !== RESPONSE_START[i]) return false
  return true
}

/** Index just past the blank line ending a head (CRLF or bare LF endings), or -1. */
function headEnd (bytes: Uint8Array): number {
  let i = bytes.indexOf(LF)
  while (i >= 0) {
    const next = bytes[i + 1] === CR ? i + 2 : i + 1
    if (bytes[next] === LF) return next + 1
    i = bytes.indexOf(LF, i + 1)
  }
  return -1
}

/** A response head with `Connection: close`; interim: 1xx but not 101 (after 101 the bytes are another protocol). */
function rewriteHead (head: Uint8Array, extra: Array<[string, string]>): { bytes: Uint8Array, interim: boolean } | undefined {
  const lines = Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('latin1').split(/\r?\n/)
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(lines[0])
  if (status == null) return undefined
  const code = Number(status[1])
  if (code >= 100 && code < 200) return { bytes: head, interim: code !== 101 }
  const fields: Array<[string, string]> = []
  for (const line of lines.slice(1)) {
    if (line === '') continue
    const colon = line.indexOf(':')
    if (colon <= 0) return undefined
    fields.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()])
  }
  const dropped = hopByHop(fields)
  const kept = lines.slice(1).filter(line => line !== '' && !dropped.has(line.slice(0, line.indexOf(':')).toLowerCase()))
  const text = [lines[0], ...kept, ...extra.map(([name, value]) => `${name}: ${value}`), 'Connection: close', 'Proxy-Connection: close', '', ''].join('\r\n')
  return { bytes: Buffer.from(text, 'latin1'), interim: false }
}
