/**
 * Ends a connection or stream whose peer sends a length prefix longer than
 * any honest frame needs, before libp2p's readers take it in one byte at a
 * time (frame-watch.ts says why that takes a node down).
 *
 * A FrameWatch sees every byte a peer sends from the first, in order, at
 * each layer that starts with multistream-select:
 *  - the raw connection (TCP, or a relayed circuit), whose negotiation of
 *    the encrypter anyone who reaches the port can flood: guardedTransport()
 *    gives the transport an upgrader that sets a watch on it (in the
 *    options of its dials and listeners, which TCP uses, and in its
 *    components, which the circuit relay transport uses);
 *  - the encrypted connection, whose negotiation of the muxer any key can
 *    flood, when noise did not agree a muxer in its handshake:
 *    guardedEncrypter();
 *  - every stream, from its negotiation through the frames of libp2p's
 *    length-prefixed protocols: guardedMuxer() for yamux's, and for the
 *    data channels of WebRTC's connections (which bring their own muxer
 *    and negotiate neither encrypter nor muxer) the muxer guardedTransport()
 *    hands their upgrade.
 *
 * A watch wraps the object's `onData` (@libp2p/utils' AbstractMessageStream
 * calls it for every read) and, where we propose, its `send` (to know our
 * proposals) until the negotiation is over. It takes its wrappers off once
 * there is nothing left to follow, so a tunnel's data path runs as before
 * after the few bytes of its negotiation. It is set only where no reader
 * has taken a byte yet (bytes that came before it, still waiting in the
 * read buffer, are judged first): a watch that started mid-frame could
 * take a payload byte for a prefix. Where that cannot be made sure, or the
 * object is not of the shape it was written for, nothing is set, and the
 * node's log says so once (the tests fail on it).
 */

import { FrameWatch } from './frame-watch.ts'
import type { FrameWatchInit, Framing, Verdict } from './frame-watch.ts'
import type { ComponentLogger, ConnectionEncrypter, Logger, StreamMuxer, StreamMuxerFactory, Transport, Upgrader } from '@libp2p/interface'

export class FramingRefusedError extends Error {
  static name = 'FramingRefusedError'
  constructor (message: string) {
    super(message)
    this.name = 'FramingRefusedError'
  }
}

/** What a watch needs of a stream or connection: @libp2p/utils' AbstractMessageStream. */
interface Watchable {
  onData: (data: Uint8Array | Iterable<Uint8Array>) => void
  send: (data: Uint8Array | Iterable<Uint8Array>) => boolean
  readBuffer: { byteLength: number } & Iterable<Uint8Array>
  listenerCount: (type: string) => number
  abort: (err: Error) => void
}

function isWatchable (x: any): x is Watchable {
  return x != null && typeof x.onData === 'function' && typeof x.send === 'function' && typeof x.abort === 'function' && typeof x.listenerCount === 'function' &&
    typeof x.readBuffer?.byteLength === 'number' && typeof x.readBuffer[Symbol.iterator] === 'function'
}

export type OnRefused = (verdict: Extract<Verdict, { state: 'refused' }>) => void

/**
 * Follows what the peer sends on `target` from its first byte, and aborts
 * it with a FramingRefusedError at a length prefix too long. False when no
 * watch could be set (see above).
 */
export function watchFrames (target: unknown, init: FrameWatchInit, onRefused?: OnRefused): boolean {
  if (!isWatchable(target) || target.listenerCount('message') > 0) return false
  const watch = new FrameWatch(init)
  let restoreOnData: (() => void) | undefined
  let restoreSend: (() => void) | undefined
  /** Takes the wrappers off once they have nothing left to do. */
  const unwrap = (): void => {
    if (!watch.negotiating) restoreSend?.()
    if (!watch.watching) restoreOnData?.()
  }
  /** Whether the bytes may go on to the readers. */
  const pass = (chunks: Iterable<Uint8Array>): boolean => {
    for (const chunk of chunks) {
      const verdict = watch.feed(chunk)
      if (verdict.state === 'watching') continue
      if (verdict.state === 'done') break
      // the class's own onData again: the aborted stream's closed read side drops what still comes
      unwrap()
      target.abort(new FramingRefusedError(verdict.reason))
      onRefused?.(verdict)
      return false
    }
    return true
  }
  if (!pass(target.readBuffer) || !watch.watching) return true
  restoreOnData = wrap(target, 'onData', own => function (this: Watchable, data): void {
    if (!pass(data instanceof Uint8Array ? [data] : data)) return
    unwrap()
    own.call(this, data)
  })
  if (init.role === 'outbound') {
    restoreSend = wrap(target, 'send', own => function (this: Watchable, data): boolean {
      if (watch.negotiating) for (const chunk of (data instanceof Uint8Array ? [data] : data)) watch.sent(chunk)
      const result = own.call(this, data)
      unwrap()
      return result
    })
  }
  return true
}

/** Puts what `make` makes of `target[key]` in its place; gives back what puts the original back (own, or its class's), once. */
function wrap<K extends 'onData' | 'send'> (target: Watchable, key: K, make: (own: Watchable[K]) => Watchable[K]): () => void {
  const hadOwn = Object.hasOwn(target, key)
  const own = target[key]
  target[key] = make(own)
  let restored = false
  return () => {
    if (restored) return
    restored = true
    if (hadOwn) target[key] = own
    else delete (target as Partial<Watchable>)[key]
  }
}

/** Which of libp2p's protocols are length-prefixed in what a peer sends, and which only in their first frame. */
export function libp2pFraming (lengthPrefixed: Iterable<string> = []): (protocol: string) => Framing {
  const extra = new Set(lengthPrefixed)
  return protocol => {
    if (extra.has(protocol)) return 'length-prefixed'
    if (/^\/ipfs\/id\/(push\/)?1\.0\.0$/.test(protocol) || /\/kad\/1\.0\.0$/.test(protocol)) return 'length-prefixed'
    if (/^\/libp2p\/(autonat|dcutr|fetch)(\/|$)/.test(protocol) || /^\/(meshsub|floodsub|webrtc-signaling)\//.test(protocol)) return 'length-prefixed'
    // a hop or stop message, then the relayed connection's own bytes
    if (/^\/libp2p\/circuit\/relay\/0\.2\.0\/(hop|stop)$/.test(protocol)) return 'first-frame'
    return 'raw'
  }
}

/** A connection or stream a guard ended, for the operator. */
export interface FramingRefusal {
  /** The peer's address, where known (the connection's; a stream's is its connection's). */
  remote?: string
  /** What was ended: a connection (in its negotiation of the encrypter or the muxer), or a stream. */
  what: 'connection' | 'stream'
  /** The protocol agreed on, if the negotiation was over. */
  protocol?: string
  reason: string
}

export type OnFramingRefused = (refusal: FramingRefusal) => void

/** The peer's address of each watched connection and of what the encrypter made of it, for the refusals' `remote`. */
const remotes = new WeakMap<object, string>()

function remoteOf (x: unknown): string | undefined {
  if (x == null || typeof x !== 'object') return undefined
  const known = remotes.get(x)
  if (known != null) return known
  const addr = (x as { remoteAddr?: { toString: () => string } }).remoteAddr
  return addr == null ? undefined : addr.toString()
}

function reporter (log: Logger, what: FramingRefusal['what'], remote: string | undefined, onRefused?: OnFramingRefused): OnRefused {
  return verdict => {
    log('ended a %s from %s: %s', what, remote ?? 'an unknown address', verdict.reason)
    onRefused?.({ remote, what, protocol: verdict.protocol, reason: verdict.reason })
  }
}

/** What a watch needs of a muxer: @libp2p/utils' AbstractStreamMuxer, which calls these for every stream it makes. */
interface StreamHooks {
  onRemoteStream: (stream: unknown) => void
  onCreateStream: (...args: unknown[]) => unknown
}

/**
 * Sets a watch on every stream `muxer` makes: an inbound one as the muxer
 * hands it on (before any of its bytes is read; yamux and WebRTC's data
 * channels alike), an outbound one before our select() sends on it.
 */
function watchStreams (muxer: unknown, registrar: { getProtocols: () => string[] }, framingOf: (protocol: string) => Framing, report: OnRefused, unwatched: (why: string) => void): void {
  const hooks = muxer as Partial<StreamHooks>
  const { onRemoteStream, onCreateStream } = hooks
  if (typeof onRemoteStream !== 'function' || typeof onCreateStream !== 'function') {
    unwatched('a muxer without onRemoteStream and onCreateStream')
    return
  }
  hooks.onRemoteStream = function (this: unknown, stream: unknown): void {
    // the protocols as libp2p's handle() takes them, when the stream comes (a handler added or removed meanwhile changes neither)
    const protocols = registrar.getProtocols()
    if (!watchFrames(stream, { role: 'inbound', accepts: p => protocols.includes(p), framingOf }, report)) unwatched('an inbound stream of another shape')
    onRemoteStream.call(this, stream)
  }
  const watchOutbound = (stream: unknown): unknown => {
    if (!watchFrames(stream, { role: 'outbound', accepts: () => false, framingOf }, report)) unwatched('an outbound stream of another shape')
    return stream
  }
  hooks.onCreateStream = function (this: unknown, ...args: unknown[]): unknown {
    const stream = onCreateStream.apply(this, args)
    return stream instanceof Promise ? stream.then(watchOutbound) : watchOutbound(stream)
  }
}

/** `factory`'s muxer with a watch on every stream. */
export function guardedMuxer<C extends { logger: ComponentLogger }> (factory: (components: C) => StreamMuxerFactory, framingOf: (protocol: string) => Framing, onRefused?: OnFramingRefused): (components: C) => StreamMuxerFactory {
  return components => {
    const log = components.logger.forComponent('spareband:frame-guard')
    return watchedMuxerFactory(factory(components), registrarOf(components), framingOf, log, onRefused)
  }
}

/**
 * The registrar of libp2p's components, read when a stream comes: libp2p
 * makes it after the transports and muxers, and hands every one of them all
 * its components, whatever their types say they take.
 */
function registrarOf (components: object): { getProtocols: () => string[] } {
  return { getProtocols: () => (components as { registrar: { getProtocols: () => string[] } }).registrar.getProtocols() }
}

/** `inner`, whose muxers set a watch on every stream. */
function watchedMuxerFactory (inner: StreamMuxerFactory, registrar: { getProtocols: () => string[] }, framingOf: (protocol: string) => Framing, log: Logger, onRefused?: OnFramingRefused, unwatched = onceLog(log, 'streams')): StreamMuxerFactory {
  const createStreamMuxer = (maConn: Parameters<StreamMuxerFactory['createStreamMuxer']>[0]): StreamMuxer => {
    const muxer = inner.createStreamMuxer(maConn)
    watchStreams(muxer, registrar, framingOf, reporter(log, 'stream', remoteOf(maConn), onRefused), unwatched)
    return muxer
  }
  return Object.assign(Object.create(inner), { createStreamMuxer })
}

/** Says once, as an error, that a kind of connection or stream goes unwatched: the guard is then off for it. */
function onceLog (log: Logger, what: string): (why: string) => void {
  let said = false
  return why => {
    if (!said) log.error('%s are not watched for over-long length prefixes: %s', what, why)
    said = true
  }
}

/** `factory`'s encrypter, with a watch on the encrypted connection's negotiation of the muxer. */
export function guardedEncrypter<C extends { logger: ComponentLogger, upgrader: Pick<Upgrader, 'getStreamMuxers'> }> (factory: (components: C) => ConnectionEncrypter, onRefused?: OnFramingRefused): (components: C) => ConnectionEncrypter {
  return components => {
    const inner = factory(components)
    const log = components.logger.forComponent('spareband:frame-guard')
    const accepts = (protocol: string): boolean => components.upgrader.getStreamMuxers().has(protocol)
    const unwatched = onceLog(log, 'encrypted connections')
    const watched = <R extends { connection: unknown, streamMuxer?: unknown }>(maConn: unknown, result: R, role: 'inbound' | 'outbound'): R => {
      const remote = remoteOf(maConn)
      // the muxer is made on the encrypted connection: its streams' refusals name this address
      if (remote != null && result.connection != null && typeof result.connection === 'object') remotes.set(result.connection, remote)
      // a muxer agreed on in the handshake: no negotiation follows, the muxer's frames come next
      if (result.streamMuxer == null && !watchFrames(result.connection, { role, accepts, framingOf: () => 'raw' }, reporter(log, 'connection', remote, onRefused))) {
        unwatched('one of another shape, or read from already')
      }
      return result
    }
    const guarded: Pick<ConnectionEncrypter, 'secureInbound' | 'secureOutbound'> = {
      secureInbound: async (connection, options) => watched(connection, await inner.secureInbound(connection, options), 'inbound'),
      secureOutbound: async (connection, options) => watched(connection, await inner.secureOutbound(connection, options), 'outbound')
    }
    return Object.assign(Object.create(inner), guarded)
  }
}

/**
 * `transport`, handing each connection it makes to an upgrader that first
 * sets a watch on its negotiation of the encrypter: in its dials' and
 * listeners' options (TCP upgrades with those) and in its components (the
 * circuit relay transport upgrades with its own). A proxy: every other
 * property is the transport's own, and its methods run on it.
 */
export function guardedTransport<C extends { logger: ComponentLogger }> (factory: (components: C) => Transport, framingOf: (protocol: string) => Framing, onRefused?: OnFramingRefused): (components: C) => Transport {
  return components => {
    const registrar = registrarOf(components)
    const log = components.logger.forComponent('spareband:frame-guard')
    const unwatched = onceLog(log, 'connections')
    // a muxer is handed over per connection (WebRTC's): said once for all of them
    const unwatchedStreams = onceLog(log, 'streams')
    const upgraders = new WeakMap<Upgrader, Upgrader>()
    const guardedUpgrader = (upgrader: Upgrader): Upgrader => {
      let g = upgraders.get(upgrader)
      if (g != null) return g
      const accepts = (protocol: string): boolean => upgrader.getConnectionEncrypters().has(protocol)
      // role: what libp2p's upgrader will run, handle() or select(); a dial may be told to answer (initiator: false).
      // A transport that brings its own muxer (WebRTC's data channels) needs no negotiation of encrypter or muxer,
      // but its streams negotiate as any: its muxer gets the watch on them
      const watched = <O>(maConn: unknown, role: 'inbound' | 'outbound', opts: O): O => {
        const given = (opts as { muxerFactory?: StreamMuxerFactory } | undefined)?.muxerFactory
        if (!skipsEncryption(opts) && !watchFrames(maConn, { role, accepts, framingOf: () => 'raw' }, reporter(log, 'connection', remoteOf(maConn), onRefused))) unwatched('one of another shape, or read from already')
        return given == null ? opts : { ...opts, muxerFactory: watchedMuxerFactory(given, registrar, framingOf, log, onRefused, unwatchedStreams) }
      }
      const overrides: Partial<Upgrader> = {
        upgradeInbound: async (maConn, opts) => upgrader.upgradeInbound(maConn, watched(maConn, 'inbound', opts)),
        upgradeOutbound: async (maConn, opts) => upgrader.upgradeOutbound(maConn, watched(maConn, (opts as { initiator?: boolean } | undefined)?.initiator === false ? 'inbound' : 'outbound', opts))
      }
      g = delegating(upgrader, overrides)
      upgraders.set(upgrader, g)
      return g
    }
    // read when the transport asks for it: components are filled in as libp2p makes them
    const withGuardedUpgrader = new Proxy(components, {
      get (t, prop) {
        const value = Reflect.get(t, prop, t)
        return prop === 'upgrader' && value != null ? guardedUpgrader(value as unknown as Upgrader) : value
      }
    })
    const inner = factory(withGuardedUpgrader)
    return delegating(inner, {
      dial: async (ma, options) => inner.dial(ma, { ...options, upgrader: guardedUpgrader(options.upgrader) }),
      createListener: options => inner.createListener({ ...options, upgrader: guardedUpgrader(options.upgrader) })
    })
  }
}

function skipsEncryption (opts: unknown): boolean {
  return (opts as { skipEncryption?: boolean } | undefined)?.skipEncryption === true
}

/** `target` with `overrides`; every other property read from it, and its methods called on it. */
function delegating<T extends object> (target: T, overrides: Partial<T>): T {
  return new Proxy(target, {
    get (t, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop as keyof T]
      const value = Reflect.get(t, prop, t)
      return typeof value === 'function' ? value.bind(t) : value
    }
  })
}
