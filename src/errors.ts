/**
 * Cross-cutting error classes. Tests and callers match on `name`, never on
 * the message text.
 */

export class ConfigError extends Error {
  static name = 'ConfigError'
  /** Where the bad value came from: a file path, an environment variable or a flag. */
  readonly source?: string
  /** Dotted config key, e.g. `exit.allowed_ports`. */
  readonly key?: string

  constructor (message = 'Invalid configuration', details: { source?: string, key?: string } = {}) {
    super(message)
    this.name = 'ConfigError'
    this.source = details.source
    this.key = details.key
  }
}

export class IdentityExistsError extends Error {
  static name = 'IdentityExistsError'
  constructor (message = 'An identity already exists') {
    super(message)
    this.name = 'IdentityExistsError'
  }
}

export class IdentityMissingError extends Error {
  static name = 'IdentityMissingError'
  constructor (message = 'No identity found') {
    super(message)
    this.name = 'IdentityMissingError'
  }
}

export class NotStartedError extends Error {
  static name = 'NotStartedError'
  constructor (message = 'The node is not started') {
    super(message)
    this.name = 'NotStartedError'
  }
}

/** start() on a node that stop() ended: a node starts once; create a new one (same data directory) instead. */
export class NodeStoppedError extends Error {
  static name = 'NodeStoppedError'
  constructor (message = 'The node was stopped, and a stopped node cannot start again: create a new one with createSparebandNode()') {
    super(message)
    this.name = 'NodeStoppedError'
  }
}

/** Another node (in this process or another) runs on the data directory: one node per data directory. */
export class DataDirInUseError extends Error {
  static name = 'DataDirInUseError'
  readonly dataDir?: string
  /** The process that holds it. */
  readonly pid?: number

  constructor (message = 'The data directory is in use by another node', details: { dataDir?: string, pid?: number } = {}) {
    super(message)
    this.name = 'DataDirInUseError'
    this.dataDir = details.dataDir
    this.pid = details.pid
  }
}

export class NodeNotRunningError extends Error {
  static name = 'NodeNotRunningError'
  constructor (message = 'No running node found') {
    super(message)
    this.name = 'NodeNotRunningError'
  }
}

/** The data directory's api.json is there but is not what a node writes (cut short, edited, another file): its control API cannot be found. */
export class ApiInfoCorruptError extends Error {
  static name = 'ApiInfoCorruptError'
  readonly file: string
  constructor (message = 'api.json is corrupt', details: { file: string }) {
    super(message)
    this.name = 'ApiInfoCorruptError'
    this.file = details.file
  }
}

/** A listener (proxy, control API) could not bind because something else holds its address. */
/**
 * A bind to an address that is none of this machine's (EADDRNOTAVAIL), as
 * a ConfigError naming the setting: the bare system error named neither the
 * setting nor what to put there.
 */
export function notOwnAddress (what: string, key: string, host: string): ConfigError {
  return new ConfigError(`${what}: ${host} is not an address of this machine (EADDRNOTAVAIL): give one of its own addresses, 127.0.0.1, or 0.0.0.0 for all of them`, { key })
}

export class AddressInUseError extends Error {
  static name = 'AddressInUseError'
  /** `127.0.0.1:1080`, `[::1]:1080` */
  readonly address?: string

  constructor (message = 'Address in use', details: { address?: string } = {}) {
    super(message)
    this.name = 'AddressInUseError'
    this.address = details.address
  }
}

/**
 * Why a tunnel was refused: an exit's answer (the tunnel protocol's
 * statuses other than OK, docs/PROTOCOLS.md), NO_EXIT when no exit of
 * the region is known or none of those asked could be dialled, or NO_ANSWER when the last exit asked never
 * answered in time (TIMEOUT is the target's connect timing out at the exit).
 */
export const TUNNEL_REFUSAL_STATUSES = [
  'POLICY_DENIED', 'DNS_FAILED', 'CONNECT_REFUSED', 'UNREACHABLE', 'TIMEOUT',
  'QUOTA_EXCEEDED', 'RATE_LIMITED', 'OUTSIDE_SCHEDULE', 'INSUFFICIENT_CREDIT',
  'BUSY', 'BAD_REQUEST', 'NO_EXIT', 'NO_ANSWER'
] as const
export type TunnelRefusalStatus = typeof TUNNEL_REFUSAL_STATUSES[number]

/**
 * No exit would or could open a tunnel an embedding app asked for
 * (SparebandNode.connect). `status` is the exit's answer (POLICY_DENIED,
 * DNS_FAILED, UNREACHABLE, CONNECT_REFUSED, TIMEOUT, QUOTA_EXCEEDED,
 * RATE_LIMITED, OUTSIDE_SCHEDULE, INSUFFICIENT_CREDIT, BUSY, BAD_REQUEST),
 * or NO_EXIT when no exit of the region is known or none of those asked
 * could be dialled: one of
 * TUNNEL_REFUSAL_STATUSES, typed so that a misspelt status in an app's
 * comparison is a compile error. `exit` names the exit that refused.
 */
export class TunnelRefusedError extends Error {
  static name = 'TunnelRefusedError'
  readonly status: TunnelRefusalStatus
  /** The peer id of the exit that refused; undefined for NO_EXIT (no exit answered). */
  readonly exit?: string

  constructor (status: TunnelRefusalStatus, message = `tunnel refused: ${status}`, details: { exit?: string } = {}) {
    super(message)
    this.name = 'TunnelRefusedError'
    this.status = status
    this.exit = details.exit
  }
}

/** `host:port`, with IPv6 hosts in brackets. */
export function formatHostPort (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** A file system error's code in words a user reads without looking up errno names; undefined for codes not listed. */
const FS_ERROR_WORDS: Record<string, string> = {
  ENOENT: 'no such file',
  EISDIR: 'it is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ELOOP: 'too many symbolic links',
  EROFS: 'the file system is read-only',
  ENOSPC: 'the disk is full'
}

export function fsErrorWords (err: any): string | undefined {
  return typeof err?.code === 'string' ? FS_ERROR_WORDS[err.code] : undefined
}

/** What a file system error says, in words with its code: "no such file (ENOENT)". */
export function describeFsError (err: any): string {
  const words = fsErrorWords(err)
  if (words != null) return `${words} (${String(err.code)})`
  return err?.code ?? err?.message ?? String(err)
}
