/**
 * HTTP proxy ingress on 127.0.0.1:3128 by default: CONNECT for TLS and any
 * TCP, and absolute-URI plain HTTP requests (one request per client
 * connection: the origin and the client are both told to close, and
 * nothing after the request is forwarded, see http-message.ts).
 * `Proxy-Authorization: Basic` carries the targeting user name.
 */

import { ProxyListener, endRefused } from './proxy-listener.ts'
import { Uint8ArrayList } from 'uint8arraylist'
import { HttpProxyProtocolError, buildOriginRequestHead, encodeResponse, getHeader, parseAbsoluteTarget, parseConnectTarget, parseProxyAuthorization, parseRequestHead, reasonPhrase } from './http-proxy-protocol.ts'
import { httpStatusFor } from './status-codes.ts'
import { TunnelStatus } from './tunnel-protocol.ts'
import { RequestBodyFramer, ResponseHeadRewriter } from './http-message.ts'
import { ClientGoneError, ProxyRefusal } from './ingress.ts'
import { TargetingError, authenticate } from './targeting.ts'
import { HANDSHAKE_TIMEOUT } from './socks5.ts'
import type { Ingress } from './ingress.ts'
import type { RequestHead } from './http-proxy-protocol.ts'
import type { Socket } from 'node:net'

export class HttpProxyServer extends ProxyListener {
  constructor (ingress: Ingress, host: string, port: number) {
    super(ingress, host, port, 'the HTTP proxy')
  }

  protected onConnection (socket: Socket): void {
    const buf = new Uint8ArrayList()
    const timer = setTimeout(() => { reply(socket, 408, reasonPhrase(408), 'no complete request head in time') }, HANDSHAKE_TIMEOUT)
    const onData = (chunk: Buffer): void => {
      buf.append(chunk)
      let head: RequestHead | undefined
      try {
        head = parseRequestHead(buf.subarray())
      } catch (err: any) {
        clearTimeout(timer)
        socket.off('data', onData)
        refuseRequest(socket, err instanceof HttpProxyProtocolError ? err.status : 400, err.message)
        return
      }
      if (head == null) return
      clearTimeout(timer)
      socket.off('data', onData)
      socket.pause()
      void this.handle(socket, head, buf.subarray(head.headBytes))
    }
    socket.on('data', onData)
  }

  private async handle (socket: Socket, head: RequestHead, early: Uint8Array): Promise<void> {
    let targeting
    let given: ReturnType<typeof parseProxyAuthorization>
    try {
      const header = getHeader(head, 'proxy-authorization')
      given = parseProxyAuthorization(header)
      // present but unreadable: asking again beats going on as if no user name (and no region) had been given
      if (header != null && given == null) throw new TargetingError('Proxy-Authorization must be Basic base64(user:password)', 'credentials')
      targeting = authenticate(given, this.ingress.init.credentials)
    } catch (err: any) {
      const credentials = err instanceof TargetingError && err.kind === 'credentials'
      // the operator sees which user name was tried (never the password); the client is not told more than "wrong"
      const user = credentials && given != null ? ` (user name "${given.username}")` : ''
      this.ingress.refused('http', err instanceof TargetingError ? err.kind : 'targeting', `${head.method} ${head.target}: ${err.message}${user}`)
      if (credentials) {
        reply(socket, 407, reasonPhrase(407), `spareband: ${PROXY_AUTH}: ${err.message}`, [['Proxy-Authenticate', 'Basic realm="spareband"'], [STATUS_HEADER, PROXY_AUTH]])
      } else refuseRequest(socket, 400, err.message)
      return
    }
    let target: { host: string, port: number }
    let forward: Uint8Array | undefined
    try {
      if (head.method === 'CONNECT') {
        target = parseConnectTarget(head.target)
      } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(head.target)) {
        const abs = parseAbsoluteTarget(head.target)
        target = abs
        forward = buildOriginRequestHead(head, abs)
      } else {
        refuseRequest(socket, 400, 'this is a proxy: send CONNECT host:port or an absolute http:// URI')
        return
      }
    } catch (err: any) {
      refuseRequest(socket, err instanceof HttpProxyProtocolError ? err.status : 400, err.message)
      return
    }

    let tunnel
    try {
      // a plain request is itself for the target: its client may half-close behind it and still want the answer
      ({ tunnel, early } = await this.ingress.openFor(socket, target, targeting, early, forward != null || early.byteLength > 0))
    } catch (err: any) {
      if (err instanceof ClientGoneError) {
        this.ingress.init.log('HTTP %s %s given up: %s', head.method, head.target, err.message)
        socket.destroy()
        return
      }
      const [status, reason] = err instanceof ProxyRefusal ? httpStatusFor(err.outcome) : [502, 'Bad Gateway']
      this.ingress.init.log('HTTP %s %s refused: %s', head.method, head.target, err.message)
      // which exit said so, when one did: a scraper can tell a target that refuses one exit from one that is down
      const exit: Array<[string, string]> = err instanceof ProxyRefusal && err.exit != null ? [[EXIT_HEADER, err.exit]] : []
      reply(socket, status, reason, `spareband: ${err.outcome ?? 'error'}: ${err.message}`, [[STATUS_HEADER, err.outcome ?? 'error'], ...exit])
      return
    }
    if (forward == null) {
      socket.write(`HTTP/1.1 200 Connection Established\r\n${EXIT_HEADER}: ${tunnel.exit.toString()}\r\n\r\n`)
      await this.ingress.carry(socket, tunnel, early)
    } else {
      // one request per tunnel: its body and nothing after it goes to this origin, and the client is told to close
      const body = new RequestBodyFramer(head)
      const response = new ResponseHeadRewriter([[EXIT_HEADER, tunnel.exit.toString()]])
      const sent = body.take(early)
      const first = new Uint8Array(forward.byteLength + sent.byteLength)
      first.set(forward, 0)
      first.set(sent, forward.byteLength)
      await this.ingress.carry(socket, tunnel, first, {
        filterToStream: chunk => body.take(chunk),
        filterToSocket: chunk => response.push(chunk),
        flushToSocket: () => response.flush(),
        grownToSocket: () => response.grown
      })
      if (body.excess > 0) this.ingress.init.log('HTTP %s %s: %d bytes after the request were not forwarded (a next request belongs on a new connection)', head.method, head.target, body.excess)
    }
  }
}

/**
 * Which exit carried a request (its peer id), on the CONNECT answer and on
 * a plain request's response: a scraper can tell its vantage points apart,
 * as commercial proxy networks' headers let it.
 */
export const EXIT_HEADER = 'X-Spareband-Exit'
/** Why the proxy refused a request, as a program reads it: the exit's status (POLICY_DENIED, ...) or NO_EXIT. */
export const STATUS_HEADER = 'X-Spareband-Status'
/** The status the proxy gives missing or wrong credentials (its 407), in the body and STATUS_HEADER as the others'. */
export const PROXY_AUTH = 'PROXY_AUTH'

/** Answers on its own and closes, draining what the client still sends (see endRefused). */
function reply (socket: Socket, status: number, reason: string, body: string, headers: Array<[string, string]> = []): void {
  endRefused(socket, encodeResponse(status, reason, body.endsWith('\n') ? body : body + '\n', headers))
}

/**
 * The proxy's own refusal of a request it cannot take (malformed, a user
 * name that names no exit, not a proxy request): no exit was asked. Said as
 * the exits' refusals are, so a program reading the status header hears
 * BAD_REQUEST rather than nothing.
 */
function refuseRequest (socket: Socket, status: number, message: string): void {
  reply(socket, status, reasonPhrase(status), `spareband: ${TunnelStatus.BAD_REQUEST}: ${message}`, [[STATUS_HEADER, TunnelStatus.BAD_REQUEST]])
}
