/**
 * The streams carrying a tunnel's bytes right now, on either end: those
 * whose pump (pipe.ts) runs. A stream opened ahead of need (warm) or still
 * setting up is not one. Kept so that whoever closes a connection can tell
 * what it would cut (see node/tunnel-close-guard.ts).
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
