/**
 * Follows the length-prefixed framing of what a peer sends on a byte
 * stream, frame by frame, and says when a length prefix runs longer than
 * any honest frame needs.
 *
 * Why: @libp2p/utils' `lpStream` (7.4.1, the newest) reads a varint length
 * one byte at a time and checks its size only once it decodes. Bytes with
 * the "more follows" bit set never decode, so every one is kept (about 100
 * bytes of heap each) and the reader asks for the next, one async step per
 * byte. multistream-select reads with it on every new connection (before
 * encryption: anyone who can reach the port) and on every new stream, and
 * so do identify, kad-dht, autonat and dcutr. 40 connections flooding
 * 0xff for 10 s held a node's event loop for 80 s and its RSS near 900 MB
 * (src/length-prefixed.ts bounds our own protocols' readers; these are
 * libp2p's). The watch lets frame-guard.ts end such a stream at its sixth
 * byte of prefix instead.
 *
 * What it follows: multistream-select first (its header, then proposals
 * or answers, each a varint-prefixed line), up to the protocol the two
 * ends agree on, then that protocol's frames if it is length-prefixed
 * throughout, its first frame only if it turns into raw bytes after it
 * (circuit relay), or nothing more. Anything that does not start as
 * multistream-select does is left alone: the watch only ever fails a
 * prefix, and only where it knows a prefix must be.
 */

/** multistream-select's frames are at most 1024 bytes (MAX_PROTOCOL_LENGTH): two bytes of prefix. */
export const MSS_PREFIX_BYTES = 2
/** Five bytes of prefix say up to 32 GiB; libp2p's protocols take 4 MiB at most. */
export const LP_PREFIX_BYTES = 5

const MSS_HEADER = '/multistream/1.0.0'
const MSS_NOT_AVAILABLE = 'na'
const MSS_MAX_LINE = 1 << (7 * MSS_PREFIX_BYTES)

/** How a protocol frames what a peer sends once it is agreed on. */
export type Framing = 'length-prefixed' | 'first-frame' | 'raw'

export interface FrameWatchInit {
  /**
   * 'inbound': we answer multistream-select, so the peer's lines are
   * proposals, and the one `accepts` takes ends the negotiation.
   * 'outbound': we propose, so the peer's lines are answers: 'na', or the
   * protocol agreed on.
   */
  role: 'inbound' | 'outbound'
  /** Inbound: whether we take this proposed protocol (multistream-select then agrees on it). */
  accepts: (protocol: string) => boolean
  /** How the agreed protocol frames what the peer sends. */
  framingOf: (protocol: string) => Framing
}

export type Verdict =
  | { state: 'watching' }
  /** Nothing more to follow: the rest is not framed, or not ours to judge. */
  | { state: 'done' }
  | { state: 'refused', reason: string, protocol?: string }

const WATCHING: Verdict = { state: 'watching' }
const DONE: Verdict = { state: 'done' }

export class FrameWatch {
  private phase: 'negotiating' | 'framed' | 'done' = 'negotiating'
  private headerSeen = false
  private protocol: string | undefined
  private maxPrefixBytes = MSS_PREFIX_BYTES
  private firstFrameOnly = false
  // the frame being read: its prefix so far, then how much of its body is left
  private prefixBytes = 0
  private length = 0
  private remaining = -1
  private line: number[] = []

  constructor (private readonly init: FrameWatchInit) {}

  /** Whether the watch still needs to see what comes in. */
  get watching (): boolean {
    return this.phase !== 'done'
  }

  /** Takes the next bytes the peer sent, in order. */
  feed (bytes: Uint8Array): Verdict {
    let i = 0
    while (i < bytes.byteLength) {
      if (this.phase === 'done') return DONE
      if (this.remaining < 0) {
        // reading a prefix
        const b = bytes[i++]
        this.length += (b & 0x7f) * 2 ** (7 * this.prefixBytes)
        this.prefixBytes++
        if ((b & 0x80) !== 0) {
          if (this.prefixBytes >= this.maxPrefixBytes) return this.refuse()
          continue
        }
        this.remaining = this.length
        this.prefixBytes = 0
        this.length = 0
        if (this.phase === 'negotiating' && this.remaining > MSS_MAX_LINE) return this.stop()
      } else {
        const n = Math.min(this.remaining, bytes.byteLength - i)
        if (this.phase === 'negotiating') for (let k = 0; k < n; k++) this.line.push(bytes[i + k])
        i += n
        this.remaining -= n
      }
      if (this.remaining === 0) {
        this.remaining = -1
        this.frameEnded()
      }
    }
    return this.phase === 'done' ? DONE : WATCHING
  }

  private refuse (): Verdict {
    this.phase = 'done'
    const where = this.protocol == null ? 'in protocol negotiation' : `on ${this.protocol}`
    return { state: 'refused', reason: `a length prefix longer than ${this.maxPrefixBytes} bytes ${where}`, protocol: this.protocol }
  }

  private stop (): Verdict {
    this.phase = 'done'
    return DONE
  }

  private frameEnded (): void {
    if (this.phase === 'framed') {
      if (this.firstFrameOnly) this.phase = 'done'
      return
    }
    const text = lineText(this.line)
    this.line = []
    if (!this.headerSeen) {
      // not multistream-select: nothing here to follow (and its reader will say so)
      if (text !== MSS_HEADER) this.phase = 'done'
      this.headerSeen = true
      return
    }
    if (text == null) return
    const agreed = this.init.role === 'inbound' ? this.init.accepts(text) : text !== MSS_NOT_AVAILABLE && text !== MSS_HEADER
    if (!agreed) return
    this.protocol = text
    const framing = this.init.framingOf(text)
    if (framing === 'raw') {
      this.phase = 'done'
      return
    }
    this.phase = 'framed'
    this.maxPrefixBytes = LP_PREFIX_BYTES
    this.firstFrameOnly = framing === 'first-frame'
  }
}

/** A multistream-select line without its newline; undefined for one that is not a line (the reader refuses it). */
function lineText (bytes: number[]): string | undefined {
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0x0a) return undefined
  return Buffer.from(bytes.slice(0, -1)).toString('utf8')
}
