/**
 * What the relay asks of accounting, as interfaces only: the relay meters
 * and gates, accounting (wired in by the node) decides. Keeps relay free of
 * ledger and receipt code.
 */

import type { TunnelStatus } from './tunnel-protocol.ts'
import type { PeerId } from '@libp2p/interface'

/** From the consumer's point of view: up = consumer -> target, down = target -> consumer. */
export type MeterDirection = 'up' | 'down'

export interface ExitAccounting {
  /** Refuses a new tunnel (INSUFFICIENT_CREDIT, RATE_LIMITED) before anything is dialed. */
  admit (consumer: PeerId, sessionId: string): { status: TunnelStatus, message: string } | undefined
  /**
   * Bytes carried in a consumer's session. Returns a promise to hold that
   * direction until the consumer has signed enough, or nothing to go on.
   * `queued`: bytes of this tunnel still waiting in the stream's write
   * buffer, which the consumer cannot have seen (and so cannot have signed).
   */
  meter (consumer: PeerId, sessionId: string, direction: MeterDirection, bytes: number, queued?: number): Promise<void> | undefined
  /**
   * Asked before a chunk is carried: a promise to wait on while the consumer
   * is held (then ask again), or nothing to go on. `queued` as for meter().
   */
  gate? (consumer: PeerId, queued?: number): Promise<void> | undefined
  /**
   * A tunnel ended; `reset`: abnormally (the consumer's client went away
   * mid-transfer), so some of the `bytesOut` it carried may never have
   * reached the consumer, which then cannot sign them.
   */
  tunnelEnded? (consumer: PeerId, sessionId: string, bytesOut: number, reset: boolean): void
  /** Given, at start, a way to close every open tunnel of a consumer (one that can no longer pay, say). */
  setCutOff? (cutOff: (consumer: PeerId, reason: string) => void): void
}

export interface ConsumerAccounting {
  /** The session id to send with a new tunnel to `exit`; the session stays open until release(). */
  sessionFor (exit: PeerId): string
  /** The tunnel that sessionFor() was asked for has ended (or never opened). */
  release? (exit: PeerId, sessionId: string): void
  /** Before the first tunnel of a session: introduce ourselves (proof of work) so the exit knows our allowance. */
  prepare? (exit: PeerId): Promise<void>
  meter (exit: PeerId, direction: MeterDirection, bytes: number): void
  /** Why this node may open no tunnel now (its own credit is spent), or undefined. */
  outOfCredit? (): string | undefined
}
