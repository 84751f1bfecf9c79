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
 * so do identify, kad-dht, autonat, dcutr, circuit relay and WebRTC's
 * signalling. 40 connections flooding 0xff for 10 s held a node's event
 * loop for 80 s and its RSS near 900 MB (src/length-prefixed.ts bounds our
 * own protocols' readers; these are libp2p's). The watch lets
 * frame-guard.ts end such a stream at the byte that takes a prefix past
 * what a frame may need.
 *
 * What it follows, as libp2p's readers do, line by line: multistream-select
 * (@libp2p/multistream-select's handle() and select()) up to the protocol
 * the two ends agree on, then that protocol's frames if it is
 * length-prefixed throughout, its first frame only if it turns into raw
 * bytes after it (circuit relay), or nothing more. It must never stop
 * following while a reader still reads prefixes, so it stops only where
 * the reader stops too: at the agreed protocol's raw bytes, or where the
 * reader gives up on the stream (which libp2p then aborts).
 */

/** multistream-select's frames are at most 1024 bytes (MAX_PROTOCOL_LENGTH): two bytes of prefix. */
export const MSS_PREFIX_BYTES = 2
/** Five bytes of prefix say up to 32 GiB; libp2p's protocols take 4 MiB at most. */
export const LP_PREFIX_BYTES = 5

const MSS_HEADER = '/multistream/1.0.0'

/** How a protocol frames what a peer sends once it is agreed on. */
export type Framing = 'length-prefixed' | 'first-frame' | 'raw'

export interface FrameWatchInit {
  /**
   * 'inbound': we answer multistream-select (handle()), so the peer's lines
   * are the header and proposals, and the first one `accepts` takes is
   * agreed. 'outbound': we propose (select()), so the peer's lines are the
   * header, then an answer to each of our proposals in turn, and an answer
   * equal to its proposal is agreed; `sent` must see what we send.
   */
  role: 'inbound' | 'outbound'
  /** Inbound: whether we take this proposed protocol (multistream-select then agrees on it). */
  accepts: (protocol: string) => boolean
  /** How the agreed protocol frames what the peer sends. */
  framingOf: (protocol: string) => Framing
}

export type Verdict =
  | { state: 'watching' }
  /** Nothing more to follow: the rest is not framed, or the reader gave up on the stream. */
  | { state: 'done' }
  | { state: 'refused', reason: string, protocol?: string }

const WATCHING: Verdict = { state: 'watching' }
const DONE: Verdict = { state: 'done' }

/** Varint-prefixed frames out of a byte stream, in pieces; keeps the bodies of negotiation lines. */
class FrameReader {
  private prefixBytes = 0
  private length = 0
  /** Body bytes left of the frame being read; -1 while reading its prefix. */
  private remaining = -1
  private body: number[] = []

  /**
   * Reads from `bytes` at `at`; returns where it stopped: at the end of a
   * frame (`onFrame` then had it), at the end of `bytes`, or at a prefix
   * byte that took the prefix to `maxPrefixBytes` with more to follow
   * (`overlong` then had it). `keepBody`: the frame's body is passed on.
   */
  read (bytes: Uint8Array, at: number, maxPrefixBytes: number, keepBody: boolean, onFrame: (body: number[]) => void, overlong: () => void): number {
    while (at < bytes.byteLength) {
      if (this.remaining < 0) {
        const b = bytes[at++]
        this.length += (b & 0x7f) * 2 ** (7 * this.prefixBytes)
        this.prefixBytes++
        if ((b & 0x80) !== 0) {
          if (this.prefixBytes >= maxPrefixBytes) {
            overlong()
            return at
          }
          continue
        }
        this.remaining = this.length
        this.prefixBytes = 0
        this.length = 0
      } else {
        const n = Math.min(this.remaining, bytes.byteLength - at)
        if (keepBody) for (let k = 0; k < n; k++) this.body.push(bytes[at + k])
        at += n
        this.remaining -= n
      }
      if (this.remaining === 0) {
        this.remaining = -1
        const body = this.body
        this.body = []
        onFrame(body)
        return at
      }
    }
    return at
  }
}

export class FrameWatch {
  private phase: 'negotiating' | 'framed' | 'done' = 'negotiating'
  private protocol: string | undefined
  private firstFrameOnly = false
  private readonly incoming = new FrameReader()
  /** Outbound: what we proposed, in order (the header left out), and how many of the peer's answers came after its header. */
  private readonly outgoing = new FrameReader()
  private readonly proposals: string[] = []
  private headerAnswered = false
  private answers = 0
  private answeredAhead = false

  constructor (private readonly init: FrameWatchInit) {}

  /** Whether the watch still needs to see what comes in. */
  get watching (): boolean {
    return this.phase !== 'done'
  }

  /** Whether the two ends are still agreeing on a protocol (an outbound watch then needs to see what we send). */
  get negotiating (): boolean {
    return this.phase === 'negotiating'
  }

  /** Takes the next bytes we sent, in order, while negotiating: our proposals. */
  sent (bytes: Uint8Array): void {
    let at = 0
    while (this.phase === 'negotiating' && at < bytes.byteLength) {
      at = this.outgoing.read(bytes, at, Infinity, true, body => {
        const text = lineText(body)
        if (text != null && text !== MSS_HEADER) this.proposals.push(text)
      }, () => {})
    }
  }

  /** Takes the next bytes the peer sent, in order. */
  feed (bytes: Uint8Array): Verdict {
    let at = 0
    let refused = false
    while (at < bytes.byteLength) {
      if (this.phase === 'done') return DONE
      const negotiating = this.phase === 'negotiating'
      at = this.incoming.read(bytes, at, negotiating ? MSS_PREFIX_BYTES : LP_PREFIX_BYTES, negotiating,
        body => { this.frameEnded(body) },
        () => { refused = true })
      if (refused) {
        const maxPrefixBytes = negotiating ? MSS_PREFIX_BYTES : LP_PREFIX_BYTES
        this.phase = 'done'
        const where = this.protocol == null ? 'in protocol negotiation' : `on ${this.protocol}`
        return { state: 'refused', reason: `a length prefix longer than ${maxPrefixBytes} bytes ${where}`, protocol: this.protocol }
      }
      if (this.answeredAhead) {
        this.phase = 'done'
        return { state: 'refused', reason: 'an answer to a protocol not proposed yet in protocol negotiation' }
      }
    }
    return this.phase === 'done' ? DONE : WATCHING
  }

  private frameEnded (body: number[]): void {
    if (this.phase === 'framed') {
      if (this.firstFrameOnly) this.phase = 'done'
      return
    }
    const text = lineText(body)
    // the reader refuses a line without its newline, and libp2p aborts the stream
    if (text == null) {
      this.phase = 'done'
      return
    }
    if (this.init.role === 'inbound') {
      // handle(): the header is answered wherever it comes, 'ls' and other protocols too, and it reads on
      if (text !== MSS_HEADER && this.init.accepts(text)) this.agreed(text)
      return
    }
    // select(): the header's answer first, or it gives up; then one answer per proposal, in turn
    if (!this.headerAnswered) {
      if (text === MSS_HEADER) this.headerAnswered = true
      else this.phase = 'done'
      return
    }
    const proposal = this.proposals[this.answers++]
    // an answer to a proposal not made yet: no honest peer answers ahead, and select() would take it as the answer
    // to a later proposal, where the watch could not tell which (it refuses the stream at once instead)
    if (proposal == null) this.answeredAhead = true
    else if (text === proposal) this.agreed(text)
  }

  private agreed (protocol: string): void {
    this.protocol = protocol
    const framing = this.init.framingOf(protocol)
    if (framing === 'raw') {
      this.phase = 'done'
      return
    }
    this.phase = 'framed'
    this.firstFrameOnly = framing === 'first-frame'
  }
}

/** A multistream-select line as its reader takes it (trailing white space trimmed); undefined for a frame without the newline, which the reader refuses. */
function lineText (body: number[]): string | undefined {
  if (body.length === 0 || body[body.length - 1] !== 0x0a) return undefined
  return Buffer.from(body).toString('utf8').trimEnd()
}
