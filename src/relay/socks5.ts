/**
 * SOCKS5 ingress (RFC 1928 CONNECT, RFC 1929 user/password) on
 * 127.0.0.1:1080 by default. The user name carries targeting; domain names
 * go to the exit unresolved, so the consumer does no DNS for proxied traffic.
 */

import { ProxyListener, endRefused } from './proxy-listener.ts'
import { Uint8ArrayList } from 'uint8arraylist'
import { second } from '../constants.ts'
import { AuthMethod, Command, Reply, Socks5ProtocolError, chooseMethod, encodeMethodSelection, encodeReply, encodeUserPassStatus, parseGreeting, parseRequest, parseUserPass } from './socks5-protocol.ts'
import { socksReplyFor } from './status-codes.ts'
import { ClientGoneError, ProxyRefusal } from './ingress.ts'
import { TargetingError, authenticate } from './targeting.ts'
import type { Ingress } from './ingress.ts'
import type { Targeting } from './targeting.ts'
import type { Socket } from 'node:net'

export const HANDSHAKE_TIMEOUT = 10 * second

export class Socks5Server extends ProxyListener {
  constructor (ingress: Ingress, host: string, port: number) {
    super(ingress, host, port, 'the SOCKS5 proxy')
  }

  protected onConnection (socket: Socket): void {
    const requireAuth = this.ingress.init.credentials.password != null || this.ingress.init.credentials.username != null
    const buf = new Uint8ArrayList()
    let phase: 'greeting' | 'auth' | 'request' | 'connecting' = 'greeting'
    let targeting: Targeting = {}
    /** A user name that passed authentication but names no exit: the CONNECT gets 0x02, with the reason logged. */
    let badTargeting: TargetingError | undefined
    const timer = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT)

    const onData = (chunk: Buffer): void => {
      // refused: what still comes is drained (endRefused), not kept
      if (phase === 'connecting') return
      buf.append(chunk)
      try {
        while (phase !== 'connecting') {
          const bytes = buf.subarray()
          if (phase === 'greeting') {
            const g = parseGreeting(bytes)
            if (g == null) return
            buf.consume(g.consumed)
            const method = chooseMethod(g.value.methods, requireAuth)
            socket.write(encodeMethodSelection(method))
            if (method === AuthMethod.NoAcceptable) { endRefused(socket); phase = 'connecting'; return }
            phase = method === AuthMethod.UserPass ? 'auth' : 'request'
          } else if (phase === 'auth') {
            const a = parseUserPass(bytes)
            if (a == null) return
            buf.consume(a.consumed)
            try {
              // without configured credentials any password is fine: the user name only targets
              targeting = authenticate(a.value, this.ingress.init.credentials)
            } catch (err: any) {
              if (!(err instanceof TargetingError) || err.kind === 'credentials') {
                // which user name was tried, for the operator (never the password)
                this.ingress.refused('socks5', 'credentials', `${err.message as string} (user name "${a.value.username}")`)
                endRefused(socket, encodeUserPassStatus(false))
                phase = 'connecting'
                return
              }
              // right credentials, a user name that targets nothing ("region-uk"):
              // "not allowed by ruleset" on the CONNECT tells the client more than "bad password"
              badTargeting = err
            }
            socket.write(encodeUserPassStatus(true))
            phase = 'request'
          } else {
            const r = parseRequest(bytes)
            if (r == null) return
            buf.consume(r.consumed)
            phase = 'connecting'
            socket.off('data', onData)
            socket.pause()
            clearTimeout(timer)
            if (r.value.command !== Command.Connect) {
              endRefused(socket, encodeReply(Reply.CommandNotSupported))
              return
            }
            if (badTargeting != null) {
              this.ingress.refused('socks5', 'targeting', `CONNECT ${r.value.host}:${r.value.port}: ${badTargeting.message}`)
              endRefused(socket, encodeReply(Reply.NotAllowed))
              return
            }
            void this.connect(socket, r.value.host, r.value.port, targeting, buf.subarray())
          }
        }
      } catch (err: any) {
        clearTimeout(timer)
        const failedIn = phase
        phase = 'connecting'
        // a sub-negotiation it cannot read (another version, a user name that is not UTF-8) is a failed
        // authentication to the client (RFC 1929's status), not a connection dropped without a word
        if (failedIn === 'auth' && err instanceof Socks5ProtocolError) {
          this.ingress.refused('socks5', 'credentials', err.message)
          endRefused(socket, encodeUserPassStatus(false))
        } else if (err instanceof Socks5ProtocolError && err.reply != null) endRefused(socket, encodeReply(err.reply))
        else if (err instanceof TargetingError) endRefused(socket, encodeReply(Reply.NotAllowed))
        else socket.destroy()
      }
    }
    socket.on('data', onData)
  }

  private async connect (socket: Socket, host: string, port: number, targeting: Targeting, early: Uint8Array): Promise<void> {
    let tunnel
    try {
      ({ tunnel, early } = await this.ingress.openFor(socket, { host, port }, targeting, early))
    } catch (err: any) {
      if (err instanceof ClientGoneError) {
        this.ingress.init.log('SOCKS5 CONNECT %s:%d given up: %s', host, port, err.message)
        socket.destroy()
        return
      }
      const code = err instanceof ProxyRefusal ? socksReplyFor(err.outcome) : Reply.GeneralFailure
      this.ingress.init.log('SOCKS5 CONNECT %s:%d refused: %s', host, port, err.message)
      endRefused(socket, encodeReply(code))
      return
    }
    socket.write(encodeReply(Reply.Succeeded))
    await this.ingress.carry(socket, tunnel, early)
  }
}
