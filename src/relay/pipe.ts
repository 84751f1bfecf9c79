/**
 * socket <-> libp2p stream pump, with backpressure both ways, half-close,
 * reset propagation, shaping holds and an idle timeout.
 *
 * yamux never refuses a write (its buffer is unbounded) and `for await`
 * applies no read backpressure, so this pump uses the message-based v3 API:
 * `send()` returning false pauses the socket until `drain`, and a socket
 * whose write buffer is full pauses the stream until the socket drains.
 */

import type { Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'
import { KiB, MiB } from '../constants.ts'
import { closeQuietly, waitForDrain } from './tunnel-protocol.ts'
import { FrameAligner } from './frame-aligner.ts'
import { ChunkGate } from './chunk-gate.ts'
import { markEnded, markLive } from './live-tunnels.ts'
import type { Chunk } from './chunk-gate.ts'

/** Node reads a socket this much at a time, unless told otherwise (see bulk-read.ts). */
export const NODE_READ_BYTES = 64 * KiB

/**
 * How long the remainder of a full read (bytes past its last whole frame)
 * waits for the next read before it goes out on its own. A read that
 * filled the read buffer says more was waiting: flushed at the end of the
 * turn, as a shorter read's remainder still is, it went out as a small
 * frame whenever the next read came in a later turn (a reader keeping up
 * with its writer), and the muxer then packed it with the next frame into
 * noise messages that no longer line up with frames: a 64 KiB read made a
 * full message and a small one. The tail of a transfer (a read that did
 * not fill the buffer) is never held.
 */
export const HELD_REMAINDER_MS = 1

/** A paused yamux stream still receives a whole window (up to 16 MiB) before the sender stops. */
export const PIPE_READ_BUFFER = 32 * MiB

export type Direction = 'toStream' | 'toSocket'

export interface PipeOptions {
  /** Bytes that arrived on the stream behind the protocol frame: written to the socket first. */
  initial?: Uint8ArrayList
  /**
   * Called per chunk; returns milliseconds to hold that direction (rate
   * shaping), or a promise to hold it until it settles (unsigned bytes over
   * the accounting threshold), or 0 for no hold. `queued` ('toStream'
   * only): bytes read from the socket that have not left this node yet
   * (the stream's write buffer and any remainder held for a whole frame).
   */
  onChunk?: (direction: Direction, bytes: number, queued: number) => number | Promise<void>
  /**
   * Asked before each chunk is forwarded, with `queued` as for onChunk:
   * a promise holds the chunk (and pauses its side) until it settles, then
   * the pipe asks again; undefined lets it through (see ChunkGate).
   */
  beforeChunk?: (direction: Direction, bytes: number, queued: number) => Promise<void> | undefined
  /**
   * What of each chunk read from the socket goes to the stream (the HTTP
   * proxy forwards one request and nothing after it). Bytes not returned
   * are dropped, and not counted.
   */
  filterToStream?: (chunk: Uint8Array) => Uint8Array
  /** What is written to the socket for each chunk from the stream (the HTTP proxy's response head rewrite). */
  filterToSocket?: (chunk: Uint8Array | Uint8ArrayList) => Uint8Array | Uint8ArrayList
  /** What filterToSocket still holds when the stream ends: written before the socket's FIN. */
  flushToSocket?: () => Uint8Array | Uint8ArrayList | undefined
  /** Close the tunnel when neither side has sent anything for this long. */
  idleTimeoutMs?: number
  /** The most the socket reads at a time: a read this long holds its remainder for the next (see HELD_REMAINDER_MS). @default NODE_READ_BYTES */
  readBytes?: number
  /** Aborting resets both sides (quota reached, schedule ended, operator paused). */
  signal?: AbortSignal
}

export interface PipeResult {
  bytesToStream: number
  bytesToSocket: number
  /** Why the tunnel ended abnormally, if it did. */
  error?: Error
}

/** Counted holds: a side resumes only when every reason to pause it has gone. */
class Holds {
  private count = 0
  constructor (private readonly pause: () => void, private readonly resume: () => void) {}
  get held (): boolean { return this.count > 0 }
  hold (): void { if (this.count++ === 0) this.pause() }
  release (): void { if (--this.count === 0) this.resume() }
}

export async function pipeSocketStream (socket: Socket, stream: Stream, options: PipeOptions = {}): Promise<PipeResult> {
  stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, PIPE_READ_BUFFER)
  const result: PipeResult = { bytesToStream: 0, bytesToSocket: 0 }
  const onChunk = options.onChunk
  const timers = new Set<NodeJS.Timeout>()

  markLive(stream)
  return new Promise<PipeResult>(resolve => {
    let socketDone = false
    let streamDone = false
    const finish = (): void => {
      if (!socketDone || !streamDone) return
      markEnded(stream)
      for (const t of timers) clearTimeout(t)
      clearTimeout(holdTimer)
      options.signal?.removeEventListener('abort', onAbort)
      resolve(result)
    }
    const fail = (err: Error): void => {
      result.error ??= err
      resetSocket(socket)
      if (stream.status === 'open') stream.abort(err)
    }
    const holdFor = (holds: Holds, wait: number | Promise<void>): void => {
      if (typeof wait === 'number') {
        if (wait <= 0) return
        holds.hold()
        const t = setTimeout(() => { timers.delete(t); holds.release() }, wait)
        timers.add(t)
      } else {
        holds.hold()
        wait.then(() => holds.release(), () => holds.release())
      }
    }

    const socketHolds = new Holds(() => socket.pause(), () => { if (!socket.destroyed) socket.resume() })
    // stream.resume() (@libp2p/utils 7.4) dispatches the buffered data before it
    // re-opens the yamux window: a pause taken inside that dispatch would be
    // undone and the window would stay open while the stream is paused
    let resuming = false
    // pause() and resume() send yamux window frames and throw once the
    // connection under the stream is gone (the far end was killed): that is
    // the end of this tunnel, never a reason to crash the node
    const guarded = (fn: () => void): void => {
      try {
        fn()
      } catch (err: any) {
        fail(err)
      }
    }
    const streamHolds: Holds = new Holds(
      () => { guarded(() => { if (!resuming && stream.readStatus === 'readable') stream.pause() }) },
      () => {
        guarded(() => {
          if (stream.readStatus !== 'paused') return
          resuming = true
          try { stream.resume() } finally { resuming = false }
          if (streamHolds.held && (stream.readStatus as string) === 'readable') stream.pause()
        })
      }
    )

    const writeToSocket = (data: Uint8Array | Uint8ArrayList): void => {
      let ok: boolean
      let n: number
      if (data instanceof Uint8Array) {
        ok = socket.write(data)
        n = data.byteLength
      } else {
        // a message in parts (a yamux frame cut across noise messages) goes
        // out in one writev: one syscall and one segment, not one per part
        n = 0
        socket.cork()
        for (const b of data) { socket.write(b); n += b.byteLength }
        socket.uncork()
        // corked writes all report a full buffer; what counts is what is left after the writev
        ok = socket.writableLength < socket.writableHighWaterMark
      }
      result.bytesToSocket += n
      if (!ok) {
        streamHolds.hold()
        socket.once('drain', () => streamHolds.release())
      }
      const wait = onChunk?.('toSocket', n, 0)
      if (wait != null) holdFor(streamHolds, wait)
    }

    // socket -> stream, in writes that fit one noise message each (see FrameAligner)
    const aligner = new FrameAligner()
    const fullRead = options.readBytes ?? NODE_READ_BYTES
    let flushQueued = false
    let holdTimer: NodeJS.Timeout | undefined
    const write = (data: Uint8Array | Uint8ArrayList): void => {
      if (!stream.send(data)) {
        socketHolds.hold()
        waitForDrain(stream).then(() => socketHolds.release(), () => {})
      }
    }
    // after this turn's reads, at the socket's FIN and before any abort: a held remainder never waits for data that may not come
    const flushAligned = (): void => {
      flushQueued = false
      clearTimeout(holdTimer)
      holdTimer = undefined
      const held = aligner.flush()
      if (held == null) return
      try {
        // closed under us (the muxer or the connection went): the tunnel lost these bytes, and says so
        if (stream.writeStatus !== 'writable') throw new Error(`tunnel stream closed with ${held.byteLength} bytes not sent`)
        write(held)
      } catch (err: any) {
        fail(err)
      }
    }
    const sendToStream = (data: Uint8Array): void => {
      try {
        result.bytesToStream += data.byteLength
        const now = aligner.push(data)
        if (now != null) write(now)
        if (aligner.pending > 0) {
          if (data.byteLength < fullRead) {
            if (!flushQueued) {
              flushQueued = true
              setImmediate(flushAligned)
            }
          } else if (holdTimer == null && !flushQueued) {
            holdTimer = setTimeout(flushAligned, HELD_REMAINDER_MS)
          }
        }
        const wait = onChunk?.('toStream', data.byteLength, stream.writeBufferLength + aligner.pending)
        if (wait != null) holdFor(socketHolds, wait)
      } catch (err: any) {
        fail(err)
      }
    }
    const beforeChunk = options.beforeChunk
    const toStreamGate = beforeChunk == null
      ? undefined
      : new ChunkGate({
        check: bytes => beforeChunk('toStream', bytes, stream.writeBufferLength + aligner.pending),
        forward: chunk => { sendToStream(chunk as Uint8Array) },
        pause: () => { socketHolds.hold() },
        resume: () => { socketHolds.release() },
        closed: () => stream.writeStatus !== 'writable'
      })
    socket.on('data', entry(options.filterToStream, toStreamGate, sendToStream as (chunk: Chunk) => void))
    // half-close: the socket's FIN becomes the stream's close-write, after anything held
    let socketEnded = false
    const onSocketEnd = (): void => {
      if (socketEnded) return
      socketEnded = true
      const closeWrite = (): void => {
        flushAligned()
        closeQuietly(stream)
      }
      if (toStreamGate == null) closeWrite()
      else toStreamGate.whenEmpty(closeWrite)
    }
    socket.on('end', onSocketEnd)
    // what was read before a reset still goes ahead of it, as it did before any was held back
    socket.on('error', err => {
      result.error ??= err
      flushAligned()
      if (stream.status === 'open') stream.abort(err)
    })
    socket.on('close', hadError => {
      socketDone = true
      // the socket's idle timer went with it: data still held at the gate
      // (a consumer over its threshold that never signs) must not keep the
      // stream, and the exit's tunnel slot, open for ever
      if (toStreamGate?.holding === true && options.idleTimeoutMs != null && options.idleTimeoutMs > 0) {
        const t = setTimeout(() => { timers.delete(t); fail(new Error(`held at the gate for ${options.idleTimeoutMs} ms after the socket closed`)) }, options.idleTimeoutMs)
        timers.add(t)
      }
      // a socket that closed without its FIN (reset, error, timeout) resets
      // the stream; after a clean FIN the stream finishes flushing on its own
      if ((hadError || !socketEnded) && stream.status === 'open') {
        flushAligned()
        if (stream.status === 'open') stream.abort(result.error ?? new Error('connection reset'))
      }
      finish()
    })
    if (options.idleTimeoutMs != null && options.idleTimeoutMs > 0) {
      // every byte of the tunnel passes this socket, in one direction or the other
      socket.setTimeout(options.idleTimeoutMs, () => fail(new Error(`idle for ${options.idleTimeoutMs} ms`)))
    }

    // stream -> socket
    const toSocketGate = beforeChunk == null
      ? undefined
      : new ChunkGate({
        check: bytes => beforeChunk('toSocket', bytes, 0),
        forward: writeToSocket,
        pause: () => { streamHolds.hold() },
        resume: () => { streamHolds.release() },
        closed: () => socket.destroyed || socket.writableEnded
      })
    // the gate, then the socket; the filter's output goes there, and what it still holds at the end
    const toSocket = entry(undefined, toSocketGate, writeToSocket)
    const fromStream = entry(options.filterToSocket, undefined, toSocket)
    const endSocket = (): void => {
      const held = options.flushToSocket?.()
      if (held != null && held.byteLength > 0 && !socket.destroyed && !socket.writableEnded) toSocket(held)
      const end = (): void => { if (!socket.destroyed && !socket.writableEnded) socket.end() }
      if (toSocketGate == null) end()
      else toSocketGate.whenEmpty(end)
    }
    if (options.initial != null && options.initial.byteLength > 0) fromStream(options.initial)
    stream.addEventListener('message', evt => { fromStream(evt.data) })
    // Only a FIN from the far end is a clean end. When the connection under
    // the stream goes (a relay cut the circuit at its data or time limit,
    // the relay or the far node died, TCP closed), the muxer closes its
    // streams without an error and without a FIN: passed on as a FIN, a
    // download cut short would look complete to the client.
    let remoteFin = stream.remoteWriteStatus === 'closed' && stream.status === 'open'
    stream.addEventListener('remoteCloseWrite', () => { remoteFin = true })
    const cutError = (): Error => new Error('the connection under the tunnel closed before the far end finished')
    // 'end', not 'remoteCloseWrite': the FIN can overtake data still held in a
    // paused stream's read buffer, and ending the socket then would cut it
    // a reset also ends the readable side: that must become a RST, not a FIN
    stream.addEventListener('end', () => {
      if (stream.status === 'reset' || stream.status === 'aborted') resetSocket(socket)
      else if (!remoteFin) { result.error ??= cutError(); resetSocket(socket) } else endSocket()
    })
    stream.addEventListener('close', evt => {
      streamDone = true
      if (evt.error != null) {
        // the far side reset or aborted: tell our client with a TCP RST
        result.error ??= evt.error
        resetSocket(socket)
      } else if (!remoteFin) {
        result.error ??= cutError()
        resetSocket(socket)
      } else if (stream.readBufferLength === 0) {
        // a stream closes (both FINs) while a paused reader may still hold
        // data: then the 'end' event, after the last byte, ends the socket
        endSocket()
      }
      finish()
    })

    // callers may have paused the socket while the tunnel was being set up
    socket.resume()
    // a client that sent its FIN with its request, before the tunnel was up:
    // a paused socket with nothing left to read emits 'end' all the same, and
    // that was before this listened
    if (socket.readableEnded) onSocketEnd()

    const onAbort = (): void => fail(options.signal?.reason instanceof Error ? options.signal.reason : new Error('tunnel aborted'))
    if (options.signal?.aborted === true) onAbort()
    else options.signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * Where each chunk of one direction enters: through `filter` (if any), then
 * `gate` (if any), to `forward`. With neither it is `forward` itself, so a
 * tunnel without accounting or HTTP framing pays nothing for them.
 */
function entry<T extends Chunk> (filter: ((chunk: T) => Chunk) | undefined, gate: ChunkGate | undefined, forward: (chunk: Chunk) => void): (chunk: T) => void {
  if (filter == null && gate == null) return forward
  return (chunk: T) => {
    const out = filter == null ? chunk : filter(chunk)
    if (out.byteLength === 0) return
    if (gate == null) forward(out)
    else gate.push(out)
  }
}

/**
 * Closes a socket with a TCP RST so the client sees the failure. libuv
 * refuses a reset once a FIN is queued (and Node then never emits 'close'),
 * so a socket we already ended is destroyed plainly.
 */
export function resetSocket (socket: Socket): void {
  if (socket.destroyed) return
  if (socket.writableEnded) socket.destroy()
  else socket.resetAndDestroy()
}
