/**
 * Length-prefixed framing for our own protocols: `lpStream` from
 * @libp2p/utils, with the length prefix itself bounded.
 *
 * The library reads a varint length one byte at a time and checks
 * `maxLengthLength` only once a prefix has decoded. A peer that sends
 * bytes with the "more follows" bit set (0xff 0xff ...) never completes
 * one, so every byte was kept and the whole prefix decoded again on each:
 * 37 MB of them on one receipt stream took an exit's heap past 4 GB and
 * its event loop with it (a hostile-peer review). Here a prefix longer
 * than `maxDataLength` needs is refused as soon as it is.
 */

import { decode, encodingLength } from 'uint8-varint'
import { lpStream } from '@libp2p/utils'
import type { LengthPrefixedStream } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'

export class LengthPrefixTooLongError extends Error {
  static name = 'LengthPrefixTooLongError'
  constructor (message: string) {
    super(message)
    this.name = 'LengthPrefixTooLongError'
  }
}

/** A varint length decoder that gives up past `maxBytes` bytes of prefix (not a RangeError, which the library takes for "read on"). */
export function boundedLengthDecoder (maxBytes: number): (buf: Uint8ArrayList) => number {
  return buf => {
    try {
      return decode(buf)
    } catch (err) {
      if (err instanceof RangeError && buf.byteLength >= maxBytes) throw new LengthPrefixTooLongError(`length prefix longer than ${maxBytes} bytes`)
      throw err
    }
  }
}

/** `lpStream(stream, { maxDataLength, ... })` whose length prefix may take only the bytes `maxDataLength` needs. */
export function boundedLpStream<S extends Parameters<typeof lpStream>[0]> (stream: S, opts: { maxDataLength: number, maxBufferSize?: number }): LengthPrefixedStream<S> {
  return lpStream(stream, { ...opts, lengthDecoder: boundedLengthDecoder(encodingLength(opts.maxDataLength)) })
}
