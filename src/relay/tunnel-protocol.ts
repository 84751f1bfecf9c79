/**
 * Framing of the tunnel protocol `/spareband/tunnel/1.0.0`: the consumer
 * sends one varint-length-prefixed `TunnelRequest`, the exit answers one
 * `TunnelResponse`; after OK the stream carries raw bytes both ways.
 *
 * We read the single frame ourselves rather than through `pbStream` so that
 * bytes that arrive right behind the frame are handed to the pump directly:
 * `unwrap()` puts them back into a stream that has no `message` listener
 * yet, where they would wait for the next chunk.
 */

import { isIP } from 'node:net'
import { Uint8ArrayList } from 'uint8arraylist'
import * as varint from 'uint8-varint'
import { TunnelRequest, TunnelResponse } from './pb/tunnel.ts'
import type { Stream } from '@libp2p/interface'

export { TunnelRequest, TunnelResponse }
export const TunnelStatus = TunnelResponse.Status
export type TunnelStatus = TunnelResponse.Status

/** No legitimate request or response comes near this; a larger frame is an attack or a bug. */
export const MAX_FRAME_BYTES = 4096
export const MAX_HOST_LENGTH = 253
export const MAX_SESSION_ID_LENGTH = 128

export class TunnelProtocolError extends Error {
  static name = 'TunnelProtocolError'
  constructor (message = 'Malformed tunnel frame') {
    super(message)
    this.name = 'TunnelProtocolError'
  }
}

/** A tunnel that the exit refused or that failed before OK, with the exit's status. */
export class TunnelError extends Error {
  static name = 'TunnelError'
  constructor (readonly status: TunnelStatus, message?: string, readonly exit?: string) {
    super(message ?? status)
    this.name = 'TunnelError'
  }
}

export function encodeFrame (bytes: Uint8Array): Uint8ArrayList {
  return new Uint8ArrayList(varint.encode(bytes.byteLength), bytes)
}

/**
 * Tries to cut one frame off the front of `buf`. Returns undefined while
 * incomplete; throws TunnelProtocolError on a bad or oversized length.
 */
export function splitFrame (buf: Uint8ArrayList, maxBytes = MAX_FRAME_BYTES): { frame: Uint8Array, rest: Uint8ArrayList } | undefined {
  let length: number
  try {
    length = varint.decode(buf)
  } catch (err) {
    if (err instanceof RangeError && buf.byteLength < 10) return undefined // varint not complete yet
    throw new TunnelProtocolError('bad frame length')
  }
  if (length > maxBytes) throw new TunnelProtocolError(`frame of ${length} bytes exceeds the ${maxBytes} byte limit`)
  const header = varint.encodingLength(length)
  if (buf.byteLength < header + length) {
    if (header > 5) throw new TunnelProtocolError('bad frame length')
    return undefined
  }
  return { frame: buf.subarray(header, header + length), rest: buf.sublist(header + length) }
}

/**
 * A stream opened ahead of need (warm) that sent nothing within the wait
 * for its first byte (ReadFrameOptions.firstByteTimeoutMs): no request was
 * made, so it is no refusal. Its consumer had gone quiet without closing it
 * (a connection whose far end is down).
 */
export class NoRequestError extends TunnelProtocolError {
  static name = 'NoRequestError'
  constructor (ms: number) {
    super(`no request within ${ms} ms`)
    this.name = 'NoRequestError'
  }
}

/** A stream that ended (cleanly or not) without sending a byte: a warm stream the consumer did not need, not an error. */
export class UnusedStreamError extends TunnelProtocolError {
  static name = 'UnusedStreamError'
  constructor () {
    super('stream ended before sending anything')
    this.name = 'UnusedStreamError'
  }
}

interface ReadFrameOptions {
  signal?: AbortSignal
  maxBytes?: number
  /** The whole frame must arrive within this, counted from its first byte when `firstByteTimeoutMs` is set. */
  timeoutMs?: number
  /** How long to wait for the first byte (a warm stream idles until its tunnel is needed). */
  firstByteTimeoutMs?: number
}

/**
 * Reads exactly one frame from a stream. Resolves with the frame and any
 * bytes that followed it; rejects on timeout, a closed stream, or a bad frame
 * (UnusedStreamError when the stream ended cleanly before its first byte).
 */
export async function readFrame (stream: Stream, options: ReadFrameOptions = {}): Promise<{ frame: Uint8Array, rest: Uint8ArrayList }> {
  return new Promise((resolve, reject) => {
    const buf = new Uint8ArrayList()
    let timer: NodeJS.Timeout | undefined
    const cleanup = (): void => {
      clearTimeout(timer)
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('close', onClose)
      stream.removeEventListener('remoteCloseWrite', onEnd)
      options.signal?.removeEventListener('abort', onAbort)
    }
    const fail = (err: Error): void => { cleanup(); reject(err) }
    const arm = (ms: number | undefined, timedOut: (ms: number) => Error): void => {
      clearTimeout(timer)
      if (ms != null) timer = setTimeout(() => fail(timedOut(ms)), ms)
    }
    const noFrame = (ms: number): Error => new TunnelProtocolError(`no complete frame within ${ms} ms`)
    const onMessage = (evt: any): void => {
      if (buf.byteLength === 0 && options.firstByteTimeoutMs != null) arm(options.timeoutMs, noFrame)
      buf.append(evt.data)
      try {
        const r = splitFrame(buf, options.maxBytes)
        if (r != null) { cleanup(); resolve(r) }
      } catch (err: any) { fail(err) }
    }
    // nothing sent at all, however the stream ended (a reset, a dropped connection): an unused warm stream, not a bad request
    const onClose = (evt: any): void => fail(buf.byteLength === 0 ? new UnusedStreamError() : evt.error ?? new TunnelProtocolError('stream closed before a complete frame'))
    const onEnd = (): void => fail(buf.byteLength === 0 ? new UnusedStreamError() : new TunnelProtocolError('stream ended before a complete frame'))
    const onAbort = (): void => fail(options.signal?.reason ?? new Error('aborted'))
    if (options.signal?.aborted === true) { onAbort(); return }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('close', onClose)
    stream.addEventListener('remoteCloseWrite', onEnd)
    options.signal?.addEventListener('abort', onAbort)
    if (options.firstByteTimeoutMs != null) arm(options.firstByteTimeoutMs, ms => new NoRequestError(ms))
    else arm(options.timeoutMs, noFrame)
  })
}

/** Decodes and checks a request: fields are optional on the wire and required here. */
/**
 * What a target host may be: a DNS name (labels of letters, digits, hyphens
 * and underscores, 1 to 63 characters each, 253 in all), or an IP address
 * (IPv6 in brackets or not; no zone). Nothing else reaches the resolver, the policy or a log line: a
 * NUL, a line break or a space in a name is a peer's doing, never a host.
 */
const LABEL = /^[A-Za-z0-9_-]{1,63}$/

/**
 * What is wrong with a tunnel's target host (as the request carries it),
 * or undefined when it is a host name or an IP address. The exit refuses
 * such a request, and a consumer's proxy refuses it itself, asking no exit.
 */
export function targetHostProblem (host: string): string | undefined {
  if (host.length === 0 || host.length > MAX_HOST_LENGTH + 2) return 'missing or too long'
  if (!isHostOrAddress(host)) return 'is neither a host name (labels of letters, digits, "-", "_", 1 to 63 characters each; punycode for international names) nor an IP address (no zone)'
  return undefined
}

function isHostOrAddress (host: string): boolean {
  // an IPv6 address may come in brackets, an IPv4 one not; a zone names an interface of the exit's machine, never a target
  if (host.startsWith('[') && host.endsWith(']')) return isIP(host.slice(1, -1)) === 6 && !host.includes('%')
  if (isIP(host) !== 0) return !host.includes('%')
  // a DNS name: labels of 1 to 63 characters, 253 in all, and a root dot at most
  const name = host.endsWith('.') ? host.slice(0, -1) : host
  return name.length > 0 && name.length <= 253 && name.split('.').every(label => LABEL.test(label))
}

/**
 * Concurrent tunnels to one exit share one connection; js-libp2p allows 64
 * outbound streams per protocol by default. A node that also handles the
 * protocol (an exit) must say so when it registers the handler as well:
 * libp2p takes the handler's limit over the one a dial passes, and a node
 * that was an exit could open only 64 tunnels to any other exit.
 */
export const MAX_OUTBOUND_TUNNELS = 4096

/**
 * What a consumer is told, with BUSY, by an exit that is stopping: a
 * planned stop, which its consumers do not count against its reputation
 * (they still try another exit at once).
 */
export const EXIT_STOPPING_MESSAGE = 'the exit is stopping'

export function decodeTunnelRequest (frame: Uint8Array): { sessionId: string, host: string, port: number } {
  let req: TunnelRequest
  try {
    req = TunnelRequest.decode(frame)
  } catch (err: any) {
    throw new TunnelProtocolError(`undecodable request: ${err.message}`)
  }
  const host = req.targetHost ?? ''
  const port = req.targetPort ?? 0
  const sessionId = req.sessionId ?? ''
  const problem = targetHostProblem(host)
  if (problem != null) throw new TunnelProtocolError(`target_host ${problem}`)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TunnelProtocolError(`target_port ${port} is not 1-65535`)
  if (sessionId.length > MAX_SESSION_ID_LENGTH) throw new TunnelProtocolError('session_id too long')
  return { sessionId, host, port }
}

export function decodeTunnelResponse (frame: Uint8Array): { status: TunnelStatus, message: string } {
  let res: TunnelResponse
  try {
    res = TunnelResponse.decode(frame)
  } catch (err: any) {
    throw new TunnelProtocolError(`undecodable response: ${err.message}`)
  }
  if (res.status == null || res.status === TunnelStatus.UNUSED || !(res.status in TunnelStatus)) throw new TunnelProtocolError('response without a valid status')
  return { status: res.status, message: res.message ?? '' }
}

/** Sends a frame, honouring backpressure. */
export async function sendFrame (stream: Stream, bytes: Uint8Array): Promise<void> {
  if (!stream.send(encodeFrame(bytes))) await waitForDrain(stream)
}

/**
 * Closes our side, then resets the stream unless the remote closes its
 * side within `ms`. A half-closed stream stays in its connection until both
 * sides have closed (nothing enforces the streams' inactivity timeout), so
 * a peer that never closes its side would keep it, and a slot of the
 * protocol's stream limit, for as long as the connection lasts.
 */
export async function closeWithin (stream: Stream, ms: number): Promise<void> {
  try {
    await stream.close({ signal: AbortSignal.timeout(ms) })
  } catch (err: any) {
    stream.abort(err)
    return
  }
  if (stream.status !== 'open') return
  await new Promise<void>(resolve => {
    const onClose = (): void => { clearTimeout(timer); resolve() }
    const timer = setTimeout(() => {
      stream.removeEventListener('close', onClose)
      stream.abort(new Error(`the remote did not close its side within ${ms} ms`))
      resolve()
    }, ms)
    timer.unref()
    stream.addEventListener('close', onClose, { once: true })
  })
}

/** Closes a stream gracefully, or resets it when that fails; for the paths that do not wait for it. */
export function closeQuietly (stream: Stream): void {
  stream.close().catch(err => stream.abort(err))
}

/**
 * Waits for `drain`, or rejects when the stream closes first.
 * (`stream.onDrain()` in @libp2p/utils 7.4 resolves at once after the first drain.)
 */
export async function waitForDrain (stream: Stream): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onDrain = (): void => { stream.removeEventListener('close', onClose); resolve() }
    const onClose = (e: any): void => { stream.removeEventListener('drain', onDrain); reject(e.error ?? new Error('stream closed')) }
    stream.addEventListener('drain', onDrain, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}
