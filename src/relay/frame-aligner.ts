/**
 * Cuts a byte stream into stream writes that each travel as one yamux frame
 * in one noise message.
 *
 * noise carries at most 65,519 plaintext bytes per message and yamux puts a
 * 12-byte header on each frame, so a 64 KiB socket read written as it is
 * becomes a 65,548-byte frame: a full noise message and a 29-byte one after
 * it (and through a relay, the same again on each leg). The small one costs
 * what a full one does in encryption set-up, TCP writes and wake-ups, and
 * the reader then gets every frame in two parts.
 * On a tunnel download that was one extra message per 64 KiB.
 *
 * Bulk data (a write of a whole frame or more) goes out in multiples of
 * the frame size; the remainder is held and goes out with the next write,
 * or on its own once the caller flushes (the pump does that after the
 * current turn of the event loop, so nothing waits for more data that may
 * never come). Writes smaller than a frame, with nothing held, go out at
 * once, as they came: interactive traffic is never delayed.
 */

import { Uint8ArrayList } from 'uint8arraylist'

/** noise's largest plaintext: a 65,535-byte message less its 16-byte tag. */
const NOISE_MAX_PLAINTEXT = 65535 - 16
const NOISE_LENGTH_PREFIX = 2
const YAMUX_HEADER = 12

/**
 * The largest write that goes as one yamux frame in one noise message, also
 * when the connection is relayed: there the whole noise message (with its
 * length prefix and tag) rides in a yamux frame of the connection to the
 * relay, which must fit one noise message of its own, on each leg (the
 * relay forwards what it gets as it gets it). 30 bytes less than a direct
 * connection alone would need, so one size serves both.
 */
export const ONE_MESSAGE_PAYLOAD = NOISE_MAX_PLAINTEXT - YAMUX_HEADER - NOISE_LENGTH_PREFIX - 16 - YAMUX_HEADER

export class FrameAligner {
  private held?: Uint8ArrayList

  constructor (private readonly size = ONE_MESSAGE_PAYLOAD) {}

  /** Bytes held back, waiting for more data or a flush. */
  get pending (): number {
    return this.held?.byteLength ?? 0
  }

  /** What to write now for `data` (undefined: nothing yet), holding back a remainder of a bulk write. */
  push (data: Uint8Array): Uint8Array | Uint8ArrayList | undefined {
    if (this.held == null) {
      if (data.byteLength < this.size) return data
      const keep = data.byteLength % this.size
      if (keep === 0) return data
      this.held = new Uint8ArrayList(data.subarray(data.byteLength - keep))
      return data.subarray(0, data.byteLength - keep)
    }
    const all = this.held
    all.append(data)
    const keep = all.byteLength % this.size
    if (all.byteLength < this.size) return undefined
    this.held = keep === 0 ? undefined : all.sublist(all.byteLength - keep)
    return all.sublist(0, all.byteLength - keep)
  }

  /** The bytes held back, now (the caller writes them); nothing is held after. */
  flush (): Uint8ArrayList | undefined {
    const held = this.held
    this.held = undefined
    return held
  }
}
