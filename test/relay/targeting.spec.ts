import { describe, it, expect } from 'vitest'
import { authenticate, parseTargeting } from '../../src/relay/targeting.ts'

describe('proxy user name targeting', () => {
  it('parses regions and sessions', () => {
    expect(parseTargeting('region-de')).toEqual({ region: 'de', sessionId: undefined })
    expect(parseTargeting('region-us-ca-session-abc123')).toEqual({ region: 'us-ca', sessionId: 'abc123' })
    expect(parseTargeting('REGION-JP')).toEqual({ region: 'jp', sessionId: undefined })
    expect(parseTargeting('session-x1')).toEqual({ sessionId: 'x1' })
    // a UUID, as scrapers name sessions; the region's shape says where the id starts
    expect(parseTargeting('region-de-session-550e8400-e29b-41d4-a716-446655440000')).toEqual({ region: 'de', sessionId: '550e8400-e29b-41d4-a716-446655440000' })
    expect(parseTargeting('region-us-ca-session-a-session-b')).toEqual({ region: 'us-ca', sessionId: 'a-session-b' })
    expect(parseTargeting('session-9f1c-77')).toEqual({ sessionId: '9f1c-77' })
    // the United Kingdom, as people write it: its ISO code is gb
    expect(parseTargeting('region-uk')).toEqual({ region: 'gb', sessionId: undefined })
    expect(parseTargeting('region-UK-eng-session-s1')).toEqual({ region: 'gb-eng', sessionId: 's1' })
    expect(parseTargeting('')).toEqual({})
    expect(parseTargeting(undefined)).toEqual({})
  })

  it('rejects unknown regions and other shapes, naming them', () => {
    expect(() => parseTargeting('region-xx')).toThrow(/unknown region "xx"/)
    expect(() => parseTargeting('alice')).toThrow(/not "region-/)
    expect(() => parseTargeting('region-de-session-')).toThrow('the session id in proxy user name "region-de-session-" is empty: a session id is 1 to 64 letters, digits, \'_\', \'.\' or \'-\'')
  })

  it('says which rule a session id breaks, when the rest of the user name is right', () => {
    const long = 'a'.repeat(65)
    expect(() => parseTargeting(`region-de-session-${long}`)).toThrow(`the session id in proxy user name "region-de-session-${long}" is 65 characters long: a session id is 1 to 64 letters, digits, '_', '.' or '-'`)
    expect(() => parseTargeting('session-a/b')).toThrow(/the session id in proxy user name "session-a\/b" has a character other than letters, digits/)
    // 64 is still a session id; a misspelt keyword is a shape error
    expect(parseTargeting(`region-de-session-${'a'.repeat(64)}`).sessionId).toHaveLength(64)
    expect(() => parseTargeting('region-de-sesion-abc')).toThrow('proxy user name "region-de-sesion-abc" is not "region-<cc>[-<sub>][-session-<id>]"')
  })

  it('quotes at most 100 characters of a user name, control characters escaped: a 10 KB name came back whole in the answer', () => {
    const huge = `region-de-session-${'b'.repeat(10_000)}`
    let message = ''
    try { parseTargeting(huge) } catch (err: any) { message = err.message }
    expect(message).toBe(`the session id in proxy user name "${huge.slice(0, 100)}..." is 10000 characters long: a session id is 1 to 64 letters, digits, '_', '.' or '-'`)
    expect(() => parseTargeting('x\r\nInjected: 1')).toThrow('proxy user name "x\\x0d\\x0aInjected: 1" is not')
  })

  it('checks operator credentials and keeps the targeting after the user name', () => {
    const required = { username: 'alice', password: 's3cret' }
    expect(authenticate({ username: 'alice', password: 's3cret' }, required)).toEqual({})
    expect(authenticate({ username: 'alice-region-de', password: 's3cret' }, required)).toEqual({ region: 'de', sessionId: undefined })
    expect(() => authenticate({ username: 'alice-region-de', password: 'nope' }, required)).toThrow(/wrong/)
    expect(() => authenticate({ username: 'bob', password: 's3cret' }, required)).toThrow(/wrong/)
    expect(() => authenticate(undefined, required)).toThrow(/required/)
    // a refusal quotes the user name the client sent, not the part after proxy.username
    expect(() => authenticate({ username: 'alice-region-xx', password: 's3cret' }, required)).toThrow('unknown region "xx" in proxy user name "alice-region-xx"')
    expect(() => authenticate({ username: 'alice-regoin-de', password: 's3cret' }, required)).toThrow('proxy user name "alice-regoin-de" is not "alice[-region-<cc>[-<sub>]][-session-<id>]"')
    expect(() => authenticate({ username: 'alice-region-de-session-', password: 's3cret' }, required)).toThrow('the session id in proxy user name "alice-region-de-session-" is empty')
    // no credentials configured: any password, the user name only targets
    expect(authenticate({ username: 'region-fr', password: 'whatever' }, {})).toEqual({ region: 'fr', sessionId: undefined })
  })
})
