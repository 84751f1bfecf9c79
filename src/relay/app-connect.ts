/**
 * Tunnels for the app a node is embedded in: the tunnel a proxy client
 * gets (exit choice, retries, accounting, idle timeout), handed over as a
 * Node.js Duplex instead of through the local SOCKS5 or HTTP port. An
 * embedding app then routes a connection with no proxy protocol and no
 * round trip through a listening socket:
 * `http.request({ createConnection: () => duplex })`,
 * `tls.connect({ socket: duplex, servername })`.
 *
 * The tunnel's pump (pipe.ts) drives a socket. The app's Duplex is one end
 * of an in-process pair; the pump gets the other end, given the two things
 * it needs of a socket beyond a Duplex: an idle timer and a reset.
 */

import { duplexPair } from 'node:stream'
import { TunnelRefusedError } from '../errors.ts'
import { regionArgument } from '../routing/regions.ts'
import { ProxyRefusal } from './ingress.ts'
import { isValidSessionId } from './targeting.ts'
import type { Ingress } from './ingress.ts'
import type { TunnelRefusalStatus } from '../errors.ts'
import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'

export interface AppConnectOptions {
  /** The exit's region, e.g. 'de' or 'us-ca'; the proxy's default region when unset. */
  region?: string
  /** Tunnels with the same session id go through the same exit while it lasts (as `-session-<id>` in a proxy user name). */
  session?: string
  /**
   * Keep the app's side open for writing once the target has ended its
   * side, until the app calls `end()`. As with `net.connect()`, by default
   * (false) the app's side ends too once it has read the target's end, so a
   * tunnel whose target closed does not stay open (at the exit too, counted
   * against its tunnels per consumer) until the idle timeout.
   * @default false
   */
  allowHalfOpen?: boolean
  /** Gives up on the tunnel being set up: connect() then rejects with the signal's reason at once. An open tunnel is ended with `duplex.destroy()`. */
  signal?: AbortSignal
}

/**
 * The net.Socket methods the app's end of a tunnel has, each returning the
 * socket itself as net.Socket's do (so a chained call keeps the type).
 */
export interface SocketMethods {
  setTimeout: (timeout: number, callback?: () => void) => this
  setKeepAlive: (enable?: boolean, initialDelay?: number) => this
  setNoDelay: (noDelay?: boolean) => this
  ref: () => this
  unref: () => this
}

/**
 * The app's end of a tunnel, and where it leads. Beyond a Duplex it has
 * what node:http (an app's own keep-alive http.Agent) and other socket users
 * call on a net.Socket: `setTimeout` (an idle timer that emits 'timeout',
 * pushed back by every byte either way), and `setKeepAlive`, `setNoDelay`,
 * `ref`, `unref`, which do nothing here (there is no TCP socket of the
 * app's: the tunnel is a stream on a libp2p connection).
 */
export interface TunnelSocket extends Duplex, SocketMethods {
  /** The exit's peer id. */
  readonly exit: string
  /**
   * From the call to the exit's answer: finding an exit (a DHT lookup, for
   * a region's first tunnel), any exits tried before this one, its DNS
   * lookup and its connect to the target.
   */
  readonly setupMs: number
}

/**
 * Opens a tunnel to `host:port` through an exit and resolves with the app's
 * end of it once the exit has connected to the target. Rejects with
 * TunnelRefusedError (its `status` says why: POLICY_DENIED, DNS_FAILED,
 * NO_EXIT, ...) when no exit would or could connect, and with a TypeError
 * for arguments no exit is asked about.
 */
export async function connectThroughTunnel (ingress: Ingress, host: string, port: number, options: AppConnectOptions = {}): Promise<TunnelSocket> {
  if (typeof host !== 'string' || host === '' || host.length > 255) throw new TypeError(`host must be a DNS name or an IP address of 1 to 255 characters, not ${JSON.stringify(host)}`)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`port must be an integer from 1 to 65535, not ${String(port)}`)
  const region = options.region != null ? regionArgument(options.region) : undefined
  if (options.session != null && !isValidSessionId(options.session)) throw new TypeError(`session must be 1 to 64 letters, digits, '_', '.' or '-', not ${JSON.stringify(options.session)}`)
  options.signal?.throwIfAborted()
  const started = performance.now()
  let tunnel
  try {
    // the signal reaches the exit search, its retries and each exit's answer: an app that gives up hears so at once
    tunnel = await ingress.open({ host, port }, { region, sessionId: options.session }, { signal: options.signal })
  } catch (err: any) {
    // given up on: the app's reason, not what the abort made of the attempt under way (TIMEOUT, RATE_LIMITED)
    if (options.signal?.aborted === true) throw options.signal.reason
    // a refusal is never OK (nor the wire's UNUSED, which decodeTunnelResponse refuses)
    if (err instanceof ProxyRefusal) throw new TunnelRefusedError(err.outcome as TunnelRefusalStatus, err.message, { exit: err.exit })
    throw err
  }
  if (options.signal?.aborted === true) {
    ingress.abandon(tunnel, new Error('the app gave up on the tunnel'))
    throw options.signal.reason
  }
  const [app, inner] = duplexPair()
  // what net.Socket does with allowHalfOpen false: the target's FIN, once read, ends our side as well;
  // after every other 'end' listener has run: a TLS socket wrapped around this one writes its last
  // record when it sees the FIN, and ended first, that write was an unhandled 'write after end'
  // that killed the process (TLS to a plain HTTP port, `spareband probe https://host:80/`)
  if (options.allowHalfOpen !== true) app.once('end', () => { process.nextTick(() => { if (!app.writableEnded && !app.destroyed) app.end() }) })
  const socket = asPumpSocket(inner, app)
  ingress.track(socket)
  // the pump reports how the tunnel ended on the app's end itself (FIN, reset, error)
  void ingress.carry(socket, tunnel).catch(() => {})
  return Object.assign(asAppSocket(app), { exit: tunnel.exit.toString(), setupMs: performance.now() - started })
}

/**
 * The app's end with the net.Socket methods its users call. node:http's
 * Agent calls setKeepAlive() and unref() on every socket it pools (an
 * uncaught TypeError without them), and ClientRequest's `timeout` calls
 * setTimeout().
 */
function asAppSocket (app: Duplex): Duplex & SocketMethods {
  const socket = app as Duplex & SocketMethods
  socket.setKeepAlive = () => socket
  socket.setNoDelay = () => socket
  socket.ref = () => socket
  socket.unref = () => socket
  let timer: NodeJS.Timeout | undefined
  const activity = (): void => { timer?.refresh() }
  // every byte either way pushes the timer back, as on a net.Socket; without a 'data' listener, which would make the app's end flow
  const push = app.push.bind(app)
  app.push = (chunk: any, encoding?: BufferEncoding) => {
    activity()
    return push(chunk, encoding)
  }
  const write = (app as any)._write.bind(app)
  ;(app as any)._write = (chunk: any, encoding: BufferEncoding, callback: (err?: Error | null) => void) => {
    activity()
    write(chunk, encoding, callback)
  }
  app.once('close', () => { clearTimeout(timer) })
  socket.setTimeout = ((ms: number, callback?: () => void) => {
    clearTimeout(timer)
    timer = undefined
    if (ms === 0) {
      if (callback != null) socket.removeListener('timeout', callback)
      return socket
    }
    if (callback != null) socket.once('timeout', callback)
    if (!socket.destroyed) {
      timer = setTimeout(() => { socket.emit('timeout') }, ms)
      timer.unref()
    }
    return socket
  })
  return socket
}

/**
 * The pump's end of the pair, with what pipe.ts uses of a net.Socket that a
 * Duplex lacks. A reset destroys the app's end with ECONNRESET, as a TCP RST
 * does a socket. Destroying one end of a pair destroys the other only when
 * it carries an error, so each end closing closes the other here: this end
 * before both ways finished (the pump gave up on it, the node stopped)
 * resets the app's, rather than leave the app waiting on a tunnel that is
 * gone, and the app's (done with, or dropped) ends the tunnel.
 */
function asPumpSocket (inner: Duplex, app: Duplex): Socket {
  const socket = inner as Duplex & Pick<Socket, 'setTimeout' | 'resetAndDestroy'>
  const reset = (): void => {
    if (app.destroyed) return
    // the target had ended (its FIN is in the app's end) and nothing listens for errors: the app
    // dropped this socket, as node:http with agent: false leaves one, unread, once its answer is
    // in, and the ECONNRESET at stop() (or the idle timeout) was an uncaught exception that took
    // the app down. An app that listens still hears of the reset (an upload cut, bytes unread)
    if (inner.writableEnded && app.listenerCount('error') === 0) app.destroy()
    else app.destroy(Object.assign(new Error('the tunnel was reset'), { code: 'ECONNRESET' }))
  }
  socket.resetAndDestroy = () => {
    reset()
    return socket as Socket
  }
  inner.once('close', () => {
    if (!inner.writableFinished || !inner.readableEnded) reset()
  })
  // and the other way: the app destroying its end without an error closes
  // only that end, and the pump would wait for the idle timeout
  app.once('close', () => {
    if (!inner.destroyed) inner.destroy()
  })
  socket.setTimeout = ((ms: number, onTimeout?: () => void) => {
    if (ms <= 0 || onTimeout == null) return socket
    // pushed back by every byte either way, as a socket's idle timer is
    const timer = setTimeout(onTimeout, ms)
    timer.unref()
    const refresh = (): void => { timer.refresh() }
    inner.on('data', refresh)
    const write = inner.write.bind(inner) as (...args: any[]) => boolean
    inner.write = ((...args: any[]) => {
      refresh()
      return write(...args)
    }) as typeof inner.write
    inner.once('close', () => { clearTimeout(timer) })
    return socket
  }) as Socket['setTimeout']
  return socket as Socket
}
