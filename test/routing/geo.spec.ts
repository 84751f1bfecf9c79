import { describe, it, expect } from 'vitest'
import geoip from 'geoip-country'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { addressesFromMultiaddrs, countryOfAddress, publicCountries, verifyRegion } from '../../src/routing/geo.ts'

// heise.de's address, registered in Germany; the others are asserted against
// the shipped database rather than assumed, so a database update cannot break the test
const HEISE = '193.99.144.80'
const GOOGLE_DNS = '8.8.8.8'
const GOOGLE_DE_V6 = '2a00:1450:4001:80b::200e'

describe('verifyRegion', () => {
  it('verifies a claim that a public address geolocates to', () => {
    expect(countryOfAddress(HEISE)).toBe('DE')
    expect(verifyRegion('de', [HEISE])).toBe('verified')
    expect(verifyRegion('DE', [HEISE])).toBe('verified')
    // subdivisions are checked at country level
    expect(verifyRegion('de-by', [HEISE])).toBe('verified')
  })

  it('agrees with the database for other well-known addresses, IPv6 included', () => {
    for (const ip of [GOOGLE_DNS, GOOGLE_DE_V6]) {
      const country = geoip.lookup(ip)?.country
      expect(country, ip).toMatch(/^[A-Z]{2}$/)
      expect(countryOfAddress(ip)).toBe(country)
      expect(verifyRegion(country!.toLowerCase(), [ip])).toBe('verified')
    }
  })

  it('reports a mismatch when public addresses exist and none is in the claimed country', () => {
    expect(verifyRegion('us', [HEISE])).toBe('mismatch')
    expect(verifyRegion('jp', [HEISE, '10.0.0.1'])).toBe('mismatch')
    // a claim that is not a region can never be true
    expect(verifyRegion('xx', [HEISE])).toBe('mismatch')
  })

  it('verifies when any public address matches', () => {
    const us = geoip.lookup(GOOGLE_DNS)?.country
    expect(us).not.toBe('DE')
    expect(verifyRegion('de', [GOOGLE_DNS, HEISE])).toBe('verified')
    expect(publicCountries([GOOGLE_DNS, HEISE, '127.0.0.1'])).toEqual(new Set([us, 'DE']))
  })

  it('cannot verify loopback, private, link-local, CGNAT or other non-public addresses', () => {
    const local = ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0',
      '255.255.255.255', '224.0.0.1', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:10.0.0.1', '2001:db8::1']
    for (const ip of local) expect(countryOfAddress(ip), ip).toBeUndefined()
    expect(verifyRegion('de', local)).toBe('unverifiable')
    expect(verifyRegion('de', [])).toBe('unverifiable')
    expect(verifyRegion('de', ['not an ip', '999.1.1.1'])).toBe('unverifiable')
  })

  it('judges IPv4-mapped IPv6 addresses by their IPv4 address', () => {
    expect(verifyRegion('de', [`::ffff:${HEISE}`])).toBe('verified')
  })
})

describe('addressesFromMultiaddrs', () => {
  it('takes ip4 and ip6 components, skipping names, circuits and garbage', async () => {
    const relay = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const exit = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    expect(addressesFromMultiaddrs([
      `/ip4/${HEISE}/tcp/4001`,
      `/ip4/${HEISE}/udp/4001/quic-v1`,
      `/ip6/${GOOGLE_DE_V6}/tcp/4001/p2p/${exit}`,
      '/dns4/example.com/tcp/443',
      `/ip4/8.8.4.4/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${exit}`,
      'garbage',
      '/ip4/127.0.0.1/tcp/1'
    ])).toEqual([HEISE, GOOGLE_DE_V6, '127.0.0.1'])
  })
})
