/**
 * How tunnel outcomes reach proxy clients: SOCKS5 reply codes (RFC 1928 §6)
 * and HTTP status codes, each with a short reason.
 */

import { TunnelStatus } from './tunnel-protocol.ts'
import { Reply } from './socks5-protocol.ts'

/** Our own outcome when no exit could be tried at all. */
export const NO_EXIT = 'NO_EXIT'
/**
 * Our own outcome when the last exit tried never answered the request in
 * time (a dead or cut-off exit): told to clients as a timeout, as the
 * target's TIMEOUT is, but in the log, status and metrics it is the exit's.
 */
export const NO_ANSWER = 'NO_ANSWER'
export type Outcome = TunnelStatus | typeof NO_EXIT | typeof NO_ANSWER

/**
 * Outcomes that are the target's answer, passed on by an exit that did its
 * job (the name, the connect, the policy on where it may go), or the
 * client's own asking (BAD_REQUEST: a target host no exit would take); the
 * others say the exits would not or could not carry this node (its credit,
 * their quota, pause, schedule, load) or that none was found.
 */
export const TARGET_OUTCOMES: ReadonlySet<string> = new Set([
  TunnelStatus.POLICY_DENIED, TunnelStatus.DNS_FAILED, TunnelStatus.UNREACHABLE, TunnelStatus.CONNECT_REFUSED, TunnelStatus.TIMEOUT,
  TunnelStatus.BAD_REQUEST
])

const SOCKS: Record<string, number> = {
  [TunnelStatus.OK]: Reply.Succeeded,
  [TunnelStatus.POLICY_DENIED]: Reply.NotAllowed,
  [TunnelStatus.INSUFFICIENT_CREDIT]: Reply.NotAllowed,
  [TunnelStatus.DNS_FAILED]: Reply.HostUnreachable,
  [TunnelStatus.UNREACHABLE]: Reply.HostUnreachable,
  [TunnelStatus.CONNECT_REFUSED]: Reply.ConnectionRefused,
  [TunnelStatus.TIMEOUT]: Reply.TtlExpired,
  [NO_EXIT]: Reply.NetworkUnreachable,
  [NO_ANSWER]: Reply.TtlExpired
}

const HTTP: Record<string, [number, string]> = {
  [TunnelStatus.OK]: [200, 'Connection Established'],
  [TunnelStatus.POLICY_DENIED]: [403, 'Forbidden'],
  [TunnelStatus.DNS_FAILED]: [502, 'Bad Gateway'],
  [TunnelStatus.UNREACHABLE]: [502, 'Bad Gateway'],
  [TunnelStatus.CONNECT_REFUSED]: [502, 'Bad Gateway'],
  [TunnelStatus.TIMEOUT]: [504, 'Gateway Timeout'],
  [TunnelStatus.RATE_LIMITED]: [429, 'Too Many Requests'],
  [TunnelStatus.QUOTA_EXCEEDED]: [503, 'Service Unavailable'],
  [TunnelStatus.OUTSIDE_SCHEDULE]: [503, 'Service Unavailable'],
  [TunnelStatus.BUSY]: [503, 'Service Unavailable'],
  [TunnelStatus.INSUFFICIENT_CREDIT]: [402, 'Payment Required'],
  [TunnelStatus.BAD_REQUEST]: [400, 'Bad Request'],
  [NO_EXIT]: [503, 'Service Unavailable'],
  [NO_ANSWER]: [504, 'Gateway Timeout']
}

export function socksReplyFor (outcome: Outcome): number {
  return SOCKS[outcome] ?? Reply.GeneralFailure
}

export function httpStatusFor (outcome: Outcome): [number, string] {
  return HTTP[outcome] ?? [502, 'Bad Gateway']
}
