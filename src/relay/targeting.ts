/**
 * Proxy user names carry targeting, as on commercial proxy networks:
 * `region-de`, `region-us-ca-session-abc123`. With operator credentials
 * configured the user name is `<user>` or `<user>-region-...`.
 */

import { noticeText } from '../notice-limiter.ts'
import { isValidRegion, normalizeRegion } from '../routing/regions.ts'

export interface Targeting {
  region?: string
  sessionId?: string
}

export class TargetingError extends Error {
  static name = 'TargetingError'
  /** 'credentials': missing or wrong (HTTP 407 asks again); 'targeting': a user name that names no exit (400). */
  readonly kind: 'credentials' | 'targeting'

  constructor (message = 'Invalid proxy user name', kind: 'credentials' | 'targeting' = 'targeting') {
    super(message)
    this.name = 'TargetingError'
    this.kind = kind
  }
}

/**
 * A session id, as user names (and node.connect()) carry it. '-' is in:
 * scrapers name sessions with UUIDs, and the region before `-session-`
 * has a fixed shape, so the id is everything after it.
 */
const SESSION_ID = '[A-Za-z0-9_.-]{1,64}'
const PATTERN = new RegExp(`^region-([a-z]{2}(?:-[a-z0-9]{1,3})?)(?:-session-(${SESSION_ID}))?$`, 'i')
const SESSION_ONLY = new RegExp(`^session-(${SESSION_ID})$`, 'i')

const SESSION_ID_ONLY = new RegExp(`^${SESSION_ID}$`)

export function isValidSessionId (id: string): boolean {
  return SESSION_ID_ONLY.test(id)
}

/** Parses the targeting part of a user name ("" or undefined = no targeting). */
/** A user name as an answer quotes it: a client's 10 KB name came back whole in the 400's body. */
function shown (user: string): string {
  return noticeText(user, MAX_QUOTED_USER)
}
const MAX_QUOTED_USER = 100

/** `quoted`: the user name as the client sent it, when `user` is what follows proxy.username in it. */
export function parseTargeting (user: string | undefined, quoted = user ?? ''): Targeting {
  if (user == null || user === '') return {}
  const m = PATTERN.exec(user)
  if (m != null) {
    // `region-uk` is `gb` (normalizeRegion says why)
    const region = normalizeRegion(m[1])
    if (!isValidRegion(region)) throw new TargetingError(`unknown region "${noticeText(m[1], 20)}" in proxy user name "${shown(quoted)}"`)
    return { region, sessionId: m[2] }
  }
  const s = SESSION_ONLY.exec(user)
  if (s != null) return { sessionId: s[1] }
  // the right shape with a session id that breaks its rule: say which rule, not only the shape
  const session = /(?:^|-)session-(.*)$/i.exec(user)
  if (session != null && !isValidSessionId(session[1])) {
    const id = session[1]
    const why = id.length === 0 ? 'is empty' : id.length > 64 ? `is ${id.length} characters long` : 'has a character other than letters, digits, \'_\', \'.\' and \'-\''
    throw new TargetingError(`the session id in proxy user name "${shown(quoted)}" ${why}: a session id is 1 to 64 letters, digits, '_', '.' or '-'`)
  }
  throw new TargetingError(quoted === user
    ? `proxy user name "${shown(user)}" is not "region-<cc>[-<sub>][-session-<id>]" nor "session-<id>"`
    : `proxy user name "${shown(quoted)}" is not "${shown(quoted.slice(0, quoted.length - user.length - 1))}[-region-<cc>[-<sub>]][-session-<id>]"`)
}

export interface Credentials { username?: string, password?: string }

/**
 * Checks credentials (when the operator configured some) and returns the
 * targeting. Throws TargetingError with a reason fit for the client.
 */
export function authenticate (given: { username: string, password: string } | undefined, required: Credentials): Targeting {
  if (required.password != null || required.username != null) {
    if (given == null) throw new TargetingError('proxy credentials required', 'credentials')
    const base = required.username ?? ''
    let rest: string
    if (base === '') rest = given.username
    else if (given.username === base) rest = ''
    else if (given.username.startsWith(base + '-')) rest = given.username.slice(base.length + 1)
    else throw new TargetingError('wrong proxy user name or password', 'credentials')
    if (required.password != null && given.password !== required.password) throw new TargetingError('wrong proxy user name or password', 'credentials')
    return parseTargeting(rest, given.username)
  }
  return parseTargeting(given?.username)
}
