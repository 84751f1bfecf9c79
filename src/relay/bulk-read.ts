/**
 * Socket reads of up to 256 KiB instead of Node's 64 KiB.
 *
 * Node reads a socket 64 KiB at a time, so a tunnel moving bulk data pays
 * one read callback, one buffer and one trip through the pump per 64 KiB.
 * A socket made with these options reads into one buffer that every such
 * socket shares (reads run one at a time on the event loop, each to its
 * callback before the next), takes a copy of exactly what came, and hands
 * it on as a 'data' event, so code that reads the socket sees nothing
 * different, but for one thing: paused, such a socket stops reading at
 * once, so it hears no FIN or reset either until resumed. Measured on a
 * plain loopback hop: 0.48-0.55 ms of CPU per MiB at 64 KiB reads,
 * 0.28-0.39 ms with this.
 *
 * The exit's sockets to targets are made so; the proxy's sockets, which
 * its server accepts, are rewrapped so (readInBulk).
 *
 * Such a socket reads as soon as it connects, whether anything listens or
 * not, so it must be paused until its reader is there (the exit's dial()
 * does that). And resume() then pause() in one turn, on a socket that has
 * never read, starts reads that the pause does not stop: resume it once
 * the reader is ready, as the pump does, not to peek.
 */

import { Socket } from 'node:net'
import type { OnReadOpts, SocketConstructorOpts } from 'node:net'

export const BULK_READ_BYTES = 256 * 1024

let shared: Buffer | undefined

export function bulkReads (): OnReadOpts {
  shared ??= Buffer.allocUnsafe(BULK_READ_BYTES)
  return {
    buffer: shared,
    callback (this: Socket, bytes: number, buffer: Uint8Array): boolean {
      // copied: the next read, on any socket, overwrites the shared buffer
      this.emit('data', Buffer.from(buffer.subarray(0, bytes)))
      return true
    }
  }
}

/**
 * A socket a server accepted, made to read in bulk: the server must be
 * made with `pauseOnConnect` (so the accepted socket has not read), and
 * the socket handed back is the one to use from then on, flowing.
 *
 * Node passes `onread` only to sockets it makes with `connect()`; a server
 * makes its sockets itself. So the accepted socket's native handle is
 * wrapped in a new Socket that reads into our buffer, the way Node wraps
 * the handles of stdin and child process pipes itself
 * (`new Socket({ handle })`), and the accepted one, now without a handle,
 * is destroyed, which releases the server's count of it. The handle keeps
 * its no-delay and its peer. Should a later Node change that shape, the
 * accepted socket is used as it is, reading 64 KiB at a time.
 *
 * Paused, such a socket reads nothing at all, not even a FIN or a reset;
 * see ingress.ts watchClient for how the proxy keeps hearing those while a
 * tunnel is being opened.
 */
export function readInBulk (accepted: Socket): Socket {
  const handle = (accepted as unknown as { _handle?: { useUserBuffer?: unknown, reading?: boolean } | null })._handle
  if (handle == null || typeof handle.useUserBuffer !== 'function' || handle.reading === true || accepted.readableLength > 0) {
    accepted.resume()
    return accepted
  }
  let socket: Socket
  try {
    socket = new Socket({ handle, allowHalfOpen: accepted.allowHalfOpen, onread: bulkReads() } as SocketConstructorOpts)
  } catch {
    accepted.resume()
    return accepted
  }
  ;(accepted as unknown as { _handle: null })._handle = null
  accepted.destroy()
  // the handle has it already (the server's noDelay); this keeps the socket's own record of it true
  socket.setNoDelay(true)
  takenOver.add(socket)
  return socket
}

const takenOver = new WeakSet<Socket>()

/** The most `socket` reads at a time, for the pump (PipeOptions.readBytes): BULK_READ_BYTES if readInBulk took it over. */
export function readBytesOf (socket: Socket): number | undefined {
  return takenOver.has(socket) ? BULK_READ_BYTES : undefined
}
