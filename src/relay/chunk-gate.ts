/**
 * Holds chunks at the door of one direction of a tunnel while a check says
 * wait, and lets them through in order once it says go.
 *
 * Why a gate before forwarding and not only a hold after it: a hold pauses
 * the side it is taken on, but every other open tunnel of the same consumer
 * still forwards the chunk it has just read. With accounting's threshold on
 * unsigned bytes that let a consumer with many tunnels be carried one chunk
 * per tunnel past it (250 tunnels: 20 MiB against a 4 MiB threshold). The
 * gate asks before each chunk goes out, so a consumer over the threshold
 * gets nothing more on any tunnel.
 */

import type { Uint8ArrayList } from 'uint8arraylist'

export type Chunk = Uint8Array | Uint8ArrayList

export interface ChunkGateInit {
  /** Before each chunk: a promise to wait on before asking again, or undefined to let it through. */
  check: (bytes: number) => Promise<void> | undefined
  forward: (chunk: Chunk) => void
  /** Stop reading this direction while chunks wait, and start again. */
  pause: () => void
  resume: () => void
  /** The tunnel is over: chunks still waiting are dropped. */
  closed: () => boolean
}

export class ChunkGate {
  private waiting?: Chunk[]
  private afterWaiting: Array<() => void> = []

  constructor (private readonly init: ChunkGateInit) {}

  /** Chunks are waiting at the gate. */
  get holding (): boolean {
    return this.waiting != null
  }

  push (chunk: Chunk): void {
    if (this.waiting != null) {
      // the source was paused, but a chunk already under way still arrives: it queues behind the others
      this.waiting.push(chunk)
      return
    }
    const wait = this.init.check(chunk.byteLength)
    if (wait == null) {
      this.init.forward(chunk)
      return
    }
    this.waiting = [chunk]
    this.init.pause()
    wait.then(this.drain, this.drain)
  }

  /**
   * Runs `fn` once no chunk waits: an end of stream (FIN) must not overtake
   * the data held here.
   */
  whenEmpty (fn: () => void): void {
    if (this.waiting == null) fn()
    else this.afterWaiting.push(fn)
  }

  private readonly drain = (): void => {
    const waiting = this.waiting
    if (waiting == null) return
    while (waiting.length > 0 && !this.init.closed()) {
      // asked again: another tunnel of the consumer may have taken the room the release made
      const wait = this.init.check(waiting[0].byteLength)
      if (wait != null) {
        wait.then(this.drain, this.drain)
        return
      }
      this.init.forward(waiting.shift()!)
    }
    this.waiting = undefined
    if (this.init.closed()) {
      this.afterWaiting = []
      return
    }
    this.init.resume()
    for (const fn of this.afterWaiting.splice(0)) fn()
  }
}
