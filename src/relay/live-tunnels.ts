/**
 * The streams of tunnels, on either end, from the request (sent by the
 * consumer in tunnel-client.ts, admitted by the exit in exit.ts) until
 * their pump (pipe.ts) ends; one
 * refused or failed on the way is closed, which is as good as unmarked. A
 * stream opened ahead of need (warm) is none until its request. Kept so
 * that whoever closes a connection can tell what it would cut (see
 * node/tunnel-close-guard.ts).
 */

import type { Stream } from '@libp2p/interface'

const live = new WeakSet<Stream>()

export function markLive (stream: Stream): void {
  live.add(stream)
}

export function markEnded (stream: Stream): void {
  live.delete(stream)
}

export function isLiveTunnel (stream: Stream): boolean {
  return live.has(stream)
}
