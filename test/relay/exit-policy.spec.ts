/**
 * Exit policy tests. Everything here is pure string classification: nothing
 * dials or resolves. Names such as `127.0.0.1.nip.io` only show which check
 * (before or after DNS) is responsible for them.
 */
import { describe, it, expect } from 'vitest'
import fc from 'fast-check'
import { BadHostError, ExitPolicy, PolicyConfigError, classifyAddress, parseDeniedCidr, parseDeniedDomain, parseTargetHost } from '../../src/relay/exit-policy.ts'
import type { PolicyDecision } from '../../src/relay/exit-policy.ts'
import { parsePortList } from '../../src/relay/ports.ts'

const PORT = 443
const policy = new ExitPolicy({ allowedPorts: parsePortList(['80,443']) })
const testnet = new ExitPolicy({ allowedPorts: parsePortList(['80,443']), allowPrivateTargets: true })

function reasonOf (d: PolicyDecision): string | undefined {
  return d.allowed ? undefined : d.reason
}

function thrown (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

// ---------------------------------------------------------------------------
// IP literals: [host as sent, canonical address, class]

type IpRow = [host: string, canonical: string, cls: string]

const ipRows: IpRow[] = [
  // loopback, every inet_aton spelling
  ['127.0.0.1', '127.0.0.1', 'loopback'],
  ['127.1', '127.0.0.1', 'loopback'],
  ['127.0.1', '127.0.0.1', 'loopback'],
  ['0x7f.0.0.1', '127.0.0.1', 'loopback'],
  ['0X7F.0X0.0X0.0X1', '127.0.0.1', 'loopback'],
  ['0x7f000001', '127.0.0.1', 'loopback'],
  ['0X7F000001', '127.0.0.1', 'loopback'],
  ['0x0000007f.0.0.1', '127.0.0.1', 'loopback'],
  ['0x7f.1', '127.0.0.1', 'loopback'],
  ['0x7f.0.1', '127.0.0.1', 'loopback'],
  ['127.0.0x1', '127.0.0.1', 'loopback'],
  ['0177.0.0.1', '127.0.0.1', 'loopback'],
  ['0000177.0.0.1', '127.0.0.1', 'loopback'],
  ['0177.1', '127.0.0.1', 'loopback'],
  ['017700000001', '127.0.0.1', 'loopback'],
  ['2130706433', '127.0.0.1', 'loopback'],
  ['127.0.0.01', '127.0.0.1', 'loopback'],
  ['127.000.000.001', '127.0.0.1', 'loopback'],
  ['127.255.255.254', '127.255.255.254', 'loopback'],
  ['2147483647', '127.255.255.255', 'loopback'],
  ['::1', '::1', 'loopback'],
  ['[::1]', '::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', '::1', 'loopback'],
  ['[0000::0001]', '::1', 'loopback'],
  ['::ffff:127.0.0.1', '127.0.0.1', 'loopback'],
  ['::ffff:7f00:1', '127.0.0.1', 'loopback'],
  ['::FFFF:7F00:0001', '127.0.0.1', 'loopback'],
  ['[::ffff:127.0.0.1]', '127.0.0.1', 'loopback'],
  ['0:0:0:0:0:ffff:7f00:1', '127.0.0.1', 'loopback'],
  ['::ffff:127.1.2.3', '127.1.2.3', 'loopback'],
  // private (RFC 1918) and its edges
  ['10.0.0.1', '10.0.0.1', 'private'],
  ['10.1', '10.0.0.1', 'private'],
  ['167772161', '10.0.0.1', 'private'],
  ['0xa000001', '10.0.0.1', 'private'],
  ['012.0.0.1', '10.0.0.1', 'private'],
  ['10.255.255.255', '10.255.255.255', 'private'],
  ['172.16.0.1', '172.16.0.1', 'private'],
  ['0xac100001', '172.16.0.1', 'private'],
  ['172.31.255.255', '172.31.255.255', 'private'],
  ['192.168.1.1', '192.168.1.1', 'private'],
  ['192.168.257', '192.168.1.1', 'private'],
  ['3232235777', '192.168.1.1', 'private'],
  ['0300.0250.1.1', '192.168.1.1', 'private'],
  ['0xc0.0xa8.0x1.0x1', '192.168.1.1', 'private'],
  ['::ffff:10.0.0.1', '10.0.0.1', 'private'],
  ['::ffff:a00:1', '10.0.0.1', 'private'],
  ['::ffff:192.168.1.1', '192.168.1.1', 'private'],
  ['::ffff:c0a8:101', '192.168.1.1', 'private'],
  ['9.255.255.255', '9.255.255.255', 'public'],
  ['11.0.0.0', '11.0.0.0', 'public'],
  ['172.15.255.255', '172.15.255.255', 'public'],
  ['172.32.0.0', '172.32.0.0', 'public'],
  ['192.167.255.255', '192.167.255.255', 'public'],
  ['192.169.0.0', '192.169.0.0', 'public'],
  // link-local, including the cloud metadata address
  ['169.254.169.254', '169.254.169.254', 'linkLocal'],
  ['0xa9fea9fe', '169.254.169.254', 'linkLocal'],
  ['2852039166', '169.254.169.254', 'linkLocal'],
  ['169.254.43518', '169.254.169.254', 'linkLocal'],
  ['::ffff:169.254.169.254', '169.254.169.254', 'linkLocal'],
  ['fe80::1', 'fe80::1', 'linkLocal'],
  ['fe80::1%eth0', 'fe80::1%eth0', 'linkLocal'],
  ['[fe80::1%eth0]', 'fe80::1%eth0', 'linkLocal'],
  ['FE80::0001%eth0', 'fe80::1%eth0', 'linkLocal'],
  ['fe80::1%25', 'fe80::1%25', 'linkLocal'],
  ['febf:ffff::1', 'febf:ffff::1', 'linkLocal'],
  // carrier-grade NAT and its edges
  ['100.64.0.1', '100.64.0.1', 'carrierGradeNat'],
  ['1681915905', '100.64.0.1', 'carrierGradeNat'],
  ['100.127.255.255', '100.127.255.255', 'carrierGradeNat'],
  ['100.63.255.255', '100.63.255.255', 'public'],
  ['100.128.0.0', '100.128.0.0', 'public'],
  // multicast
  ['224.0.0.1', '224.0.0.1', 'multicast'],
  ['0xe0000001', '224.0.0.1', 'multicast'],
  ['239.255.255.255', '239.255.255.255', 'multicast'],
  ['::ffff:224.0.0.1', '224.0.0.1', 'multicast'],
  ['ff02::1', 'ff02::1', 'multicast'],
  ['ff05::1:3', 'ff05::1:3', 'multicast'],
  // broadcast
  ['255.255.255.255', '255.255.255.255', 'broadcast'],
  ['4294967295', '255.255.255.255', 'broadcast'],
  ['0xffffffff', '255.255.255.255', 'broadcast'],
  ['0377.0377.0377.0377', '255.255.255.255', 'broadcast'],
  ['::ffff:255.255.255.255', '255.255.255.255', 'broadcast'],
  // reserved
  ['240.0.0.1', '240.0.0.1', 'reserved'],
  ['255.255.255.254', '255.255.255.254', 'reserved'],
  ['192.0.0.1', '192.0.0.1', 'reserved'],
  ['192.0.0.255', '192.0.0.255', 'reserved'],
  ['192.88.99.1', '192.88.99.1', 'reserved'],
  ['192.0.1.0', '192.0.1.0', 'public'],
  ['1::1', '1::1', 'reserved'],
  ['4000::1', '4000::1', 'reserved'],
  ['fe00::1', 'fe00::1', 'reserved'],
  ['2001:1ff::1', '2001:1ff::1', 'reserved'],
  ['2001:200::1', '2001:200::1', 'public'],
  // "this network" 0.0.0.0/8 and the IPv6 unspecified address
  ['0.0.0.0', '0.0.0.0', 'unspecified'],
  ['0', '0.0.0.0', 'unspecified'],
  ['0x0', '0.0.0.0', 'unspecified'],
  ['00', '0.0.0.0', 'unspecified'],
  ['0.0', '0.0.0.0', 'unspecified'],
  ['0.1.2.3', '0.1.2.3', 'unspecified'],
  ['::ffff:0.0.0.0', '0.0.0.0', 'unspecified'],
  ['::', '::', 'unspecified'],
  ['[::]', '::', 'unspecified'],
  ['0:0:0:0:0:0:0:0', '::', 'unspecified'],
  // benchmarking
  ['198.18.0.1', '198.18.0.1', 'benchmarking'],
  ['198.19.255.255', '198.19.255.255', 'benchmarking'],
  ['198.17.255.255', '198.17.255.255', 'public'],
  ['198.20.0.0', '198.20.0.0', 'public'],
  ['2001:2::1', '2001:2::1', 'benchmarking'],
  // documentation
  ['192.0.2.1', '192.0.2.1', 'documentation'],
  ['198.51.100.7', '198.51.100.7', 'documentation'],
  ['203.0.113.9', '203.0.113.9', 'documentation'],
  ['2001:db8::1', '2001:db8::1', 'documentation'],
  ['2001:DB8:ffff::1', '2001:db8:ffff::1', 'documentation'],
  ['3fff::1', '3fff::1', 'documentation'],
  ['192.0.3.0', '192.0.3.0', 'public'],
  ['203.0.114.0', '203.0.114.0', 'public'],
  // IPv6 unique-local and site-local
  ['fc00::1', 'fc00::1', 'uniqueLocal'],
  ['fd12:3456:789a::1', 'fd12:3456:789a::1', 'uniqueLocal'],
  ['fdff:ffff::1', 'fdff:ffff::1', 'uniqueLocal'],
  ['fec0::1', 'fec0::1', 'deprecatedSiteLocal'],
  // IPv6 forms carrying an IPv4 address
  ['::127.0.0.1', '::7f00:1', 'ipv4Compatible'],
  ['::7f00:1', '::7f00:1', 'ipv4Compatible'],
  ['::8.8.8.8', '::808:808', 'ipv4Compatible'],
  ['::0.0.0.2', '::2', 'ipv4Compatible'],
  ['::ffff:0:7f00:1', '::ffff:0:7f00:1', 'rfc6145'],
  ['::ffff:0:127.0.0.1', '::ffff:0:7f00:1', 'rfc6145'],
  ['64:ff9b::7f00:1', '64:ff9b::7f00:1', 'rfc6052'],
  ['64:ff9b::127.0.0.1', '64:ff9b::7f00:1', 'rfc6052'],
  ['64:ff9b::808:808', '64:ff9b::808:808', 'rfc6052'],
  ['64:ff9b:1::1', '64:ff9b:1::1', 'rfc6052'],
  ['2002:7f00:1::1', '2002:7f00:1::1', '6to4'],
  ['2002:c0a8:101::1', '2002:c0a8:101::1', '6to4'],
  ['2002:808:808::1', '2002:808:808::1', '6to4'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', '2001:0:4136:e378:8000:63bf:3fff:fdd2', 'teredo'],
  // other special-purpose space ipaddr.js knows
  ['100::1', '100::1', 'discard'],
  ['2001:3::1', '2001:3::1', 'amt'],
  ['2001:20::1', '2001:20::1', 'orchid2'],
  ['192.175.48.1', '192.175.48.1', 'as112'],
  ['192.52.193.1', '192.52.193.1', 'amt'],
  // public, in many spellings
  ['93.184.215.14', '93.184.215.14', 'public'],
  ['1572394766', '93.184.215.14', 'public'],
  ['0x5db8d70e', '93.184.215.14', 'public'],
  ['0x5d.0xb8.0xd7.0xe', '93.184.215.14', 'public'],
  ['1.1.1.1', '1.1.1.1', 'public'],
  ['16843009', '1.1.1.1', 'public'],
  ['0x01010101', '1.1.1.1', 'public'],
  ['01.01.01.01', '1.1.1.1', 'public'],
  ['1.1', '1.0.0.1', 'public'],
  ['8.8.8.8', '8.8.8.8', 'public'],
  ['134744072', '8.8.8.8', 'public'],
  ['0x08080808', '8.8.8.8', 'public'],
  ['0x8080808', '8.8.8.8', 'public'],
  ['0x8.0x8.0x8.0x8', '8.8.8.8', 'public'],
  ['010.010.010.010', '8.8.8.8', 'public'],
  ['01002004010', '8.8.8.8', 'public'],
  ['8.526344', '8.8.8.8', 'public'],
  ['8.8.2056', '8.8.8.8', 'public'],
  ['::ffff:1.1.1.1', '1.1.1.1', 'public'],
  ['::ffff:101:101', '1.1.1.1', 'public'],
  ['[::ffff:8.8.8.8]', '8.8.8.8', 'public'],
  ['2606:4700::1111', '2606:4700::1111', 'public'],
  ['[2606:4700::1111]', '2606:4700::1111', 'public'],
  ['2606:4700:4700::1111', '2606:4700:4700::1111', 'public'],
  ['2606:4700:4700:0:0:0:0:1111', '2606:4700:4700::1111', 'public'],
  ['2001:4860:4860::8888', '2001:4860:4860::8888', 'public'],
  ['2A00:1450:4001:80B::200E', '2a00:1450:4001:80b::200e', 'public']
]

describe('IP literals', () => {
  it('the table is large', () => {
    expect(ipRows.length).toBeGreaterThan(150)
  })

  it.each(ipRows)('%s is %s (%s)', (host, canonical, cls) => {
    const parsed = parseTargetHost(host)
    expect(parsed).toEqual({ kind: 'ip', address: canonical, family: canonical.includes(':') ? 6 : 4 })
    expect(classifyAddress(host)).toBe(cls)
    const decision = policy.checkTarget(host, PORT)
    expect(decision.allowed).toBe(cls === 'public')
    if (!decision.allowed) expect(decision.reason).not.toMatch(/^bad host/)
    // after DNS the resolver hands back the canonical form; same verdict
    expect(policy.checkAddress(canonical, PORT).allowed).toBe(cls === 'public')
  })

  it.each(ipRows)('%s is allowed on a testnet', (host) => {
    expect(testnet.checkTarget(host, PORT)).toEqual({ allowed: true })
  })

  it('denies a zone id on a public address, unless private targets are allowed', () => {
    expect(parseTargetHost('2606:4700::1111%eth0')).toEqual({ kind: 'ip', address: '2606:4700::1111%eth0', family: 6 })
    expect(classifyAddress('2606:4700::1111%eth0')).toBe('public')
    expect(reasonOf(policy.checkTarget('2606:4700::1111%eth0', PORT)))
      .toBe('2606:4700::1111%eth0 has a zone id (%eth0); scoped addresses are never public')
    expect(testnet.checkTarget('2606:4700::1111%eth0', PORT)).toEqual({ allowed: true })
  })

  it('drops the zone of an IPv4-mapped address', () => {
    expect(parseTargetHost('::ffff:1.1.1.1%eth0')).toEqual({ kind: 'ip', address: '1.1.1.1', family: 4 })
  })
})

describe('reasons', () => {
  const rows: Array<[string, string]> = [
    ['127.0.0.1', '127.0.0.1 is a loopback address'],
    ['127.1', '127.1 maps to 127.0.0.1, a loopback address'],
    ['2130706433', '2130706433 maps to 127.0.0.1, a loopback address'],
    ['[::1]', '[::1] is a loopback address'],
    ['::ffff:10.0.0.1', '::ffff:10.0.0.1 maps to 10.0.0.1, a private address'],
    ['169.254.169.254', '169.254.169.254 is a link-local address'],
    ['fe80::1%eth0', 'fe80::1%eth0 is a link-local address'],
    ['100.64.0.1', '100.64.0.1 is a carrier-grade NAT address'],
    ['255.255.255.255', '255.255.255.255 is the broadcast address'],
    ['0.0.0.0', '0.0.0.0 is an unspecified address'],
    ['203.0.113.9', '203.0.113.9 is a documentation address'],
    ['fd00::1', 'fd00::1 is a unique-local address'],
    ['64:ff9b::127.0.0.1', '64:ff9b::127.0.0.1 embeds 127.0.0.1 (NAT64), a loopback address'],
    ['64:ff9b::808:808', '64:ff9b::808:808 is a NAT64 address'],
    ['::127.0.0.1', '::127.0.0.1 embeds 127.0.0.1 (IPv4-compatible), a loopback address'],
    ['::8.8.8.8', '::8.8.8.8 maps to ::808:808, a deprecated IPv4-compatible address'],
    ['::ffff:0:a00:1', '::ffff:0:a00:1 embeds 10.0.0.1 (IPv4-translated), a private address'],
    ['2002:c0a8:101::1', '2002:c0a8:101::1 embeds 192.168.1.1 (6to4), a private address'],
    ['2002:808:808::1', '2002:808:808::1 is a 6to4 address'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', '2001:0:4136:e378:8000:63bf:3fff:fdd2 embeds 192.0.2.45 (Teredo client), a documentation address'],
    ['2001:0:a00:1::', '2001:0:a00:1:: embeds 10.0.0.1 (Teredo server), a private address'],
    ['localhost', 'localhost is a local-only name'],
    ['printer.local', 'printer.local is a local-only name (.local)'],
    ['router', "router is a single-label name, which would resolve on the exit's own network"],
    ['a..b', 'bad host "a..b": empty label'],
    ['', 'bad host: empty']
  ]

  it.each(rows)('%s: %s', (host, reason) => {
    expect(reasonOf(policy.checkTarget(host, PORT))).toBe(reason)
  })

  it('names the port and the allowed list', () => {
    expect(reasonOf(policy.checkPort(22))).toBe("port 22 is not in the exit's allowed ports (80,443)")
    expect(reasonOf(policy.checkTarget('example.com', 22))).toBe("port 22 is not in the exit's allowed ports (80,443)")
    expect(reasonOf(policy.checkAddress('93.184.215.14', 22))).toBe("port 22 is not in the exit's allowed ports (80,443)")
  })

  it('shortens and escapes hostile hosts in reasons', () => {
    const reason = reasonOf(policy.checkTarget(`${'a'.repeat(100)}\n\u0000`, PORT)) ?? ''
    expect(reason.length).toBeLessThan(160)
    expect(reason).not.toMatch(/[\n\u0000]/)
  })
})

// ---------------------------------------------------------------------------
// Names

type NameRow = [host: string, name: string, verdict: 'allowed' | 'local' | 'single-label']

const nameRows: NameRow[] = [
  ['example.com', 'example.com', 'allowed'],
  ['EXAMPLE.COM', 'example.com', 'allowed'],
  ['example.com.', 'example.com', 'allowed'],
  ['www.example.co.uk', 'www.example.co.uk', 'allowed'],
  ['_dmarc.example.com', '_dmarc.example.com', 'allowed'],
  ['xn--bcher-kva.example', 'xn--bcher-kva.example', 'allowed'],
  ['a-b.c-d.example', 'a-b.c-d.example', 'allowed'],
  ['cafe.be', 'cafe.be', 'allowed'],
  ['deadbeef.com', 'deadbeef.com', 'allowed'],
  ['0x7f.com', '0x7f.com', 'allowed'],
  ['1.2.3.com', '1.2.3.com', 'allowed'],
  ['127.0.0.1.nip.io', '127.0.0.1.nip.io', 'allowed'], // caught after DNS by checkAddress
  ['localhost.example.com', 'localhost.example.com', 'allowed'],
  ['xlocalhost.com', 'xlocalhost.com', 'allowed'],
  ['local.com', 'local.com', 'allowed'],
  ['notlocal.com', 'notlocal.com', 'allowed'],
  ['myhome.arpa', 'myhome.arpa', 'allowed'],
  [`${'a'.repeat(63)}.com`, `${'a'.repeat(63)}.com`, 'allowed'],
  ['localhost', 'localhost', 'local'],
  ['LOCALHOST', 'localhost', 'local'],
  ['localhost.', 'localhost', 'local'],
  ['foo.localhost', 'foo.localhost', 'local'],
  ['printer.local', 'printer.local', 'local'],
  ['Printer.Local.', 'printer.local', 'local'],
  ['db.internal', 'db.internal', 'local'],
  ['metadata.google.internal', 'metadata.google.internal', 'local'],
  ['home.arpa', 'home.arpa', 'local'],
  ['router.home.arpa', 'router.home.arpa', 'local'],
  ['box.localdomain', 'box.localdomain', 'local'],
  ['localhost.localdomain', 'localhost.localdomain', 'local'],
  ['nas.lan', 'nas.lan', 'local'],
  ['files.corp', 'files.corp', 'local'],
  ['router', 'router', 'single-label'],
  ['metadata', 'metadata', 'single-label'],
  ['ip6-localhost', 'ip6-localhost', 'single-label'],
  ['com', 'com', 'single-label'],
  ['0xg', '0xg', 'single-label']
]

describe('names', () => {
  it.each(nameRows)('%s is the name %s (%s)', (host, name, verdict) => {
    expect(parseTargetHost(host)).toEqual({ kind: 'name', name })
    expect(() => classifyAddress(host)).toThrow(BadHostError)
    const decision = policy.checkTarget(host, PORT)
    expect(decision.allowed).toBe(verdict === 'allowed')
    if (verdict === 'local') expect(reasonOf(decision)).toMatch(/is a local-only name/)
    if (verdict === 'single-label') expect(reasonOf(decision)).toMatch(/single-label name/)
    expect(testnet.checkTarget(host, PORT)).toEqual({ allowed: true })
  })

  it('accepts a name of exactly 253 characters', () => {
    const name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`
    expect(name.length).toBe(253)
    expect(parseTargetHost(name)).toEqual({ kind: 'name', name })
    expect(parseTargetHost(`${name}.`)).toEqual({ kind: 'name', name })
  })

  it('leaves the address a name resolves to for checkAddress', () => {
    expect(policy.checkTarget('127.0.0.1.nip.io', PORT)).toEqual({ allowed: true })
    expect(reasonOf(policy.checkAddress('127.0.0.1', PORT))).toBe('127.0.0.1 is a loopback address')
    expect(policy.checkAddress('93.184.215.14', PORT)).toEqual({ allowed: true })
    expect(policy.checkAddress('2606:4700::1111', PORT)).toEqual({ allowed: true })
  })

  it('checkAddress refuses anything that is not an IP address', () => {
    expect(reasonOf(policy.checkAddress('example.com', PORT))).toBe('"example.com" is not an IP address')
    expect(reasonOf(policy.checkAddress('', PORT))).toBe('"" is not an IP address')
    expect(policy.checkAddress('a..b', PORT).allowed).toBe(false)
  })
})

describe('denied domains', () => {
  const p = new ExitPolicy({
    allowedPorts: [[443, 443]],
    deniedDomains: ['example.com', '*.Tracker.Example.', '.ads.test']
  })

  const rows: Array<[string, boolean]> = [
    ['example.com', false],
    ['EXAMPLE.COM.', false],
    ['a.example.com', false],
    ['internal.example.com', false],
    ['a.b.c.example.com', false],
    ['badexample.com', true],
    ['example.com.evil.net', true],
    ['example.co', true],
    ['tracker.example', false],
    ['x.tracker.example', false],
    ['nottracker.example', true],
    ['ads.test', false],
    ['cdn.ads.test', false],
    ['93.184.215.14', true]
  ]

  it.each(rows)('%s allowed: %s', (host, allowed) => {
    expect(p.checkTarget(host, 443).allowed).toBe(allowed)
  })

  it('says which rule matched', () => {
    expect(reasonOf(p.checkTarget('internal.example.com', 443))).toBe('internal.example.com is in a denied domain (example.com)')
    expect(reasonOf(p.checkTarget('x.tracker.example', 443))).toBe('x.tracker.example is in a denied domain (tracker.example)')
  })
})

// ---------------------------------------------------------------------------
// Bad hosts. Decision: a string that inet_aton rejects and whose last label
// looks numeric (`1.2.3.4.5`, `256.1.1.1`, `1.2.3.4.`) is a bad host, not a
// name: no top-level domain is numeric, so it can only be a broken literal.

const badHosts: string[] = [
  '',
  ' ',
  ' example.com',
  'example.com ',
  '127.0.0.1 ',
  '\t127.0.0.1',
  '127.0.0.1\n',
  'example.com\u0000',
  'a..b',
  '.example.com',
  'example..com',
  'example.com..',
  '.',
  '..',
  `${'a'.repeat(64)}.com`,
  'a'.repeat(300),
  `${'abcdefgh.'.repeat(33)}com`,
  'exa mple.com',
  'exa$mple.com',
  'http://example.com',
  'example.com:80',
  'user@example.com',
  'example.com/path',
  'bücher.de',
  '\u212Aexample.com',
  'foo.123',
  'foo.0x1f',
  '1.2.3.4.5',
  '256.1.1.1',
  '1.2.3.256',
  '1.2.3.4.',
  '127.0.0.1.',
  '1.2.65536',
  '1.16777216',
  '4294967296',
  '999999999999999999999',
  '08.0.0.1',
  '09',
  '0x',
  '0x.1.1.1',
  '0x100.0.0.1',
  '0xfffffffff',
  '[1.2.3.4]',
  '[example.com]',
  '[::1',
  '::1]',
  '[]',
  '[::1]:80',
  ':::1',
  '1::2::3',
  '12345::1',
  'g::1',
  '1:2:3:4:5:6:7:8:9',
  '::ffff:0177.0.0.1',
  '::ffff:0x7f.0.0.1',
  '::ffff:127.1',
  '::ffff:256.0.0.1',
  'fe80::1%',
  'fe80::1%eth 0'
]

describe('bad hosts', () => {
  it.each(badHosts.map(h => [JSON.stringify(h).slice(0, 60), h]))('%s', (_label, host) => {
    const err = thrown(() => parseTargetHost(host))
    expect(err).toBeInstanceOf(BadHostError)
    expect((err as Error).name).toBe('BadHostError')
    const decision = policy.checkTarget(host, PORT)
    expect(decision.allowed).toBe(false)
    expect(reasonOf(decision)).toMatch(/^bad host/)
    // allowPrivateTargets never makes junk acceptable
    expect(testnet.checkTarget(host, PORT).allowed).toBe(false)
    expect(thrown(() => classifyAddress(host))).toBeInstanceOf(BadHostError)
  })

  it('rejects non-strings from untyped callers', () => {
    for (const host of [undefined, null, 127, {}, ['127.0.0.1'], Object.create(null), Symbol('x')]) {
      expect(thrown(() => parseTargetHost(host as any))).toBeInstanceOf(BadHostError)
      expect(policy.checkTarget(host as any, PORT).allowed).toBe(false)
      expect(policy.checkAddress(host as any, PORT).allowed).toBe(false)
    }
  })
})

// ---------------------------------------------------------------------------
// Ports

describe('ports', () => {
  const p = new ExitPolicy({ allowedPorts: parsePortList(['80,443,8000-8100']) })

  const rows: Array<[number, boolean]> = [
    [80, true], [443, true], [8000, true], [8050, true], [8100, true],
    [22, false], [25, false], [79, false], [81, false], [7999, false], [8101, false],
    [0, false], [-1, false], [65536, false], [80.5, false], [Number.NaN, false], [Infinity, false]
  ]

  it.each(rows)('port %s allowed: %s', (port, allowed) => {
    expect(p.checkPort(port).allowed).toBe(allowed)
    expect(p.checkTarget('example.com', port).allowed).toBe(allowed)
    expect(p.checkAddress('93.184.215.14', port).allowed).toBe(allowed)
  })

  it('explains invalid ports', () => {
    expect(reasonOf(p.checkPort(0))).toBe('port 0 is not a valid TCP port')
    expect(reasonOf(p.checkPort(65536))).toBe('port 65536 is not a valid TCP port')
  })

  it('with no allowed ports, nothing gets through', () => {
    const none = new ExitPolicy({ allowedPorts: [] })
    expect(reasonOf(none.checkTarget('example.com', 80))).toBe("port 80 is not in the exit's allowed ports (none)")
  })

  it('applies to private targets on a testnet too', () => {
    expect(testnet.checkTarget('127.0.0.1', 22).allowed).toBe(false)
    expect(testnet.checkAddress('127.0.0.1', 22).allowed).toBe(false)
  })
})

// ---------------------------------------------------------------------------
// Operator rules

describe('deniedCidrs', () => {
  const p = new ExitPolicy({
    allowedPorts: [[443, 443]],
    deniedCidrs: ['93.184.0.0/16', '2606:4700::/32', '::ffff:9.9.9.0/120', ' 1.1.1.1 ']
  })

  const rows: Array<[string, boolean]> = [
    ['93.184.215.14', false],
    ['1572394766', false],
    ['0x5db8d70e', false],
    ['::ffff:93.184.215.14', false],
    ['93.185.0.0', true],
    ['2606:4700::1111', false],
    ['[2606:4700:4700::1111]', false],
    ['2606:4701::1', true],
    ['9.9.9.9', false],
    ['9.9.10.1', true],
    ['1.1.1.1', false],
    ['16843009', false],
    ['1.1.1.2', true],
    ['8.8.8.8', true],
    ['2001:4860:4860::8888', true]
  ]

  it.each(rows)('%s allowed: %s', (host, allowed) => {
    expect(p.checkTarget(host, 443).allowed).toBe(allowed)
  })

  it('says which range matched', () => {
    expect(reasonOf(p.checkTarget('93.184.215.14', 443))).toBe('93.184.215.14 is in a denied range (93.184.0.0/16)')
    expect(reasonOf(p.checkTarget('0x5db8d70e', 443))).toBe('0x5db8d70e maps to 93.184.215.14, in a denied range (93.184.0.0/16)')
    expect(reasonOf(p.checkAddress('1.1.1.1', 443))).toBe('1.1.1.1 is in a denied range (1.1.1.1)')
  })
})

describe('ownAddresses', () => {
  const p = new ExitPolicy({
    allowedPorts: [[443, 443]],
    ownAddresses: ['5.6.7.8', '2a01:4f8::1', 'fe80::1%eth0']
  })

  const rows: Array<[string, boolean]> = [
    ['5.6.7.8', false],
    ['84281096', false],
    ['0x5060708', false],
    ['::ffff:5.6.7.8', false],
    ['5.6.7.9', true],
    ['2a01:4f8::1', false],
    ['[2a01:4f8:0::1]', false],
    ['2a01:4f8::2', true]
  ]

  it.each(rows)('%s allowed: %s', (host, allowed) => {
    expect(p.checkTarget(host, 443).allowed).toBe(allowed)
    if (!host.startsWith('[')) expect(p.checkAddress(host, 443).allowed).toBe(allowed)
  })

  it('learns more at run time, replacing what it learned before and keeping what it was built with', () => {
    const q = new ExitPolicy({ allowedPorts: [[443, 443]], ownAddresses: ['5.6.7.8'] })
    expect(q.setOwnAddresses(['9.9.9.1', 'fe80::1%eth0', 'not-an-address', '10.0.0.0/8'])).toEqual(['not-an-address', '10.0.0.0/8'])
    expect(q.learnedOwn).toEqual(['9.9.9.1', 'fe80::1%eth0'])
    expect(reasonOf(q.checkAddress('9.9.9.1', 443))).toBe("9.9.9.1 is one of the exit's own addresses")
    expect(q.describe()).toBe('ports 443; private targets denied; 3 own addresses')
    q.setOwnAddresses(['9.9.9.2'])
    expect(q.checkAddress('9.9.9.1', 443).allowed).toBe(true)
    expect(q.checkAddress('9.9.9.2', 443).allowed).toBe(false)
    expect(q.checkAddress('5.6.7.8', 443).allowed).toBe(false)
  })

  it('says so', () => {
    expect(reasonOf(p.checkAddress('5.6.7.8', 443))).toBe("5.6.7.8 is one of the exit's own addresses")
    expect(reasonOf(p.checkTarget('84281096', 443))).toBe("84281096 maps to 5.6.7.8, one of the exit's own addresses")
  })
})

describe('allowPrivateTargets', () => {
  const p = new ExitPolicy({
    allowedPorts: parsePortList(['80,443']),
    allowPrivateTargets: true,
    deniedCidrs: ['10.0.0.0/8'],
    deniedDomains: ['corp.example'],
    ownAddresses: ['192.168.1.5']
  })

  const rows: Array<[string, boolean]> = [
    ['127.0.0.1', true],
    ['127.1', true],
    ['0x7f000001', true],
    ['::1', true],
    ['[::1]', true],
    ['localhost', true],
    ['printer.local', true],
    ['router', true],
    ['fe80::1%eth0', true],
    ['169.254.169.254', true],
    ['192.168.1.4', true],
    ['93.184.215.14', true],
    // operator ranges still apply, in every spelling and through 6to4
    ['10.1.2.3', false],
    ['0xa010203', false],
    ['012.1.2.3', false],
    ['::ffff:10.1.2.3', false],
    ['2002:a01:203::1', false],
    ['64:ff9b::10.1.2.3', false],
    // own addresses still apply
    ['192.168.1.5', false],
    ['3232235781', false],
    // denied domains still apply
    ['corp.example', false],
    ['x.corp.example', false],
    // and junk is still junk
    ['1.2.3.4.5', false],
    ['a..b', false]
  ]

  it.each(rows)('%s allowed: %s', (host, allowed) => {
    expect(p.checkTarget(host, 443).allowed).toBe(allowed)
  })

  it('ports still apply', () => {
    expect(p.checkTarget('127.0.0.1', 22).allowed).toBe(false)
  })

  it('defaults to off', () => {
    expect(policy.checkTarget('127.0.0.1', 443).allowed).toBe(false)
    expect(new ExitPolicy({ allowedPorts: [[443, 443]], allowPrivateTargets: false }).checkTarget('10.0.0.1', 443).allowed).toBe(false)
  })
})

describe('configuration', () => {
  const bad: Array<[string, () => unknown]> = [
    ['inet_aton-style CIDR 10/8', () => new ExitPolicy({ allowedPorts: [], deniedCidrs: ['10/8'] })],
    ['prefix too long', () => new ExitPolicy({ allowedPorts: [], deniedCidrs: ['10.0.0.0/33'] })],
    ['IPv6 prefix too long', () => new ExitPolicy({ allowedPorts: [], deniedCidrs: ['::/129'] })],
    ['garbage CIDR', () => new ExitPolicy({ allowedPorts: [], deniedCidrs: ['nonsense'] })],
    ['two slashes', () => new ExitPolicy({ allowedPorts: [], deniedCidrs: ['10.0.0.0/8/8'] })],
    ['empty prefix', () => new ExitPolicy({ allowedPorts: [], deniedCidrs: ['10.0.0.0/'] })],
    ['zone in a CIDR', () => new ExitPolicy({ allowedPorts: [], deniedCidrs: ['fe80::1%eth0/64'] })],
    ['short own address', () => new ExitPolicy({ allowedPorts: [], ownAddresses: ['127.1'] })],
    ['range as own address', () => new ExitPolicy({ allowedPorts: [], ownAddresses: ['10.0.0.0/8'] })],
    ['empty label in a domain', () => new ExitPolicy({ allowedPorts: [], deniedDomains: ['a..b'] })],
    ['empty domain', () => new ExitPolicy({ allowedPorts: [], deniedDomains: [''] })],
    ['IP as a domain', () => new ExitPolicy({ allowedPorts: [], deniedDomains: ['10.0.0.1'] })],
    ['port 0', () => new ExitPolicy({ allowedPorts: [[0, 80]] })],
    ['reversed range', () => new ExitPolicy({ allowedPorts: [[80, 70]] })],
    ['port 65536', () => new ExitPolicy({ allowedPorts: [[1, 65536]] })]
  ]

  it.each(bad)('refuses %s', (_name, make) => {
    expect(make).toThrow(/exit policy/)
  })

  it('names the field and entry when the constructor refuses one', () => {
    expect(() => new ExitPolicy({ allowedPorts: [], deniedCidrs: ['10/8'] })).toThrow('exit policy: deniedCidrs entry "10" in "10/8" is not an IP address')
    expect(() => new ExitPolicy({ allowedPorts: [], deniedDomains: ['bad domain'] })).toThrow('exit policy: deniedDomains entry "bad domain" is not a domain name')
    expect(() => new ExitPolicy({ allowedPorts: [], ownAddresses: ['127.1'] })).toThrow(/^exit policy: ownAddresses entry "127.1" is not an IP address/)
  })

  it('exports the entry parsers config validation uses', () => {
    expect(parseDeniedCidr('10.0.0.0/8')[1]).toBe(8)
    expect(parseDeniedCidr(' 198.51.100.7 ')[0].toString()).toBe('198.51.100.7')
    expect(parseDeniedCidr('198.51.100.7')[1]).toBe(32)
    expect(parseDeniedCidr('2001:db8::1')[1]).toBe(128)
    expect(parseDeniedDomain('*.Example.COM')).toBe('example.com')
    expect(parseDeniedDomain('.example.com.')).toBe('example.com')
    for (const bad of ['10/8', '999.1.1.1/8', '10.0.0.0/33', '1.2.3.4/8/8', '']) {
      expect(() => parseDeniedCidr(bad), bad).toThrow(PolicyConfigError)
    }
    for (const bad of ['bad domain', 'a..b', '', '10.0.0.1', '*.']) {
      expect(() => parseDeniedDomain(bad), bad).toThrow(PolicyConfigError)
    }
    expect(new PolicyConfigError().name).toBe('PolicyConfigError')
  })

  it('describes itself in one line', () => {
    expect(policy.describe()).toBe('ports 80,443; private targets denied')
    expect(new ExitPolicy({
      allowedPorts: parsePortList(['80,443,8000-8100']),
      allowPrivateTargets: true,
      deniedCidrs: ['10.0.0.0/8'],
      deniedDomains: ['a.example', 'b.example'],
      ownAddresses: ['5.6.7.8']
    }).describe()).toBe('ports 80,443,8000-8100; private targets ALLOWED; 1 denied range; 2 denied domains; 1 own address')
  })

  it('BadHostError has its name', () => {
    expect(BadHostError.name).toBe('BadHostError')
    expect(new BadHostError().name).toBe('BadHostError')
  })
})

// ---------------------------------------------------------------------------
// Properties

/** Every IPv4 range that must be refused, written out independently of the implementation. */
const NON_PUBLIC_V4: Array<[string, number]> = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4]
]
/** Special-purpose but not dangerous; denied only because ipaddr.js does not call them unicast. */
const OTHER_SPECIAL_V4: Array<[string, number]> = [
  ['192.88.99.0', 24], ['192.175.48.0', 24], ['192.31.196.0', 24], ['192.52.193.0', 24]
]

function v4ToInt (dotted: string): number {
  return dotted.split('.').reduce((n, o) => n * 256 + Number(o), 0)
}

function intToDotted (n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

function inRange (n: number, [base, bits]: [string, number]): boolean {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
  return ((n & mask) >>> 0) === ((v4ToInt(base) & mask) >>> 0)
}

function hex16 (n: number): string {
  return n.toString(16)
}

/** The IPv4 literal spellings a consumer could send for the same address. */
function spellings (n: number): string[] {
  const o = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]
  const hi = (n >>> 16) & 0xffff
  const lo = n & 0xffff
  return [
    intToDotted(n),
    String(n),
    `0x${n.toString(16)}`,
    `0X${n.toString(16).toUpperCase()}`,
    `0${n.toString(8)}`,
    o.map(x => `0x${x.toString(16)}`).join('.'),
    o.map(x => `0${x.toString(8)}`).join('.'),
    `${o[0]}.${o[1]}.${(o[2] << 8) | o[3]}`,
    `${o[0]}.${(n & 0xffffff)}`,
    `0x${o[0].toString(16)}.0${(n & 0xffffff).toString(8)}`,
    `::ffff:${intToDotted(n)}`,
    `::ffff:${hex16(hi)}:${hex16(lo)}`,
    `[::ffff:${intToDotted(n)}]`,
    `0:0:0:0:0:ffff:${hex16(hi)}:${hex16(lo)}`
  ]
}

/** Spellings that wrap the address in another IPv6 range: denied whatever they carry. */
function wrappedSpellings (n: number): string[] {
  const hi = hex16((n >>> 16) & 0xffff)
  const lo = hex16(n & 0xffff)
  return [`64:ff9b::${intToDotted(n)}`, `64:ff9b::${hi}:${lo}`, `::${hi}:${lo}`, `2002:${hi}:${lo}::1`, `::ffff:0:${hi}:${lo}`]
}

/**
 * Reference inet_aton (glibc: strtoul with base 0 per part, no signs or
 * spaces), to check that the ipaddr.js-based parser reads the same address.
 */
function refInetAton (s: string): string | null {
  const parts = s.split('.')
  if (parts.length > 4) return null
  const values: bigint[] = []
  for (const part of parts) {
    if (/^0[xX][0-9a-fA-F]+$/.test(part)) values.push(BigInt(`0x${part.slice(2)}`))
    else if (/^0[0-7]*$/.test(part)) values.push(part.length > 1 ? BigInt(`0o${part.slice(1)}`) : 0n)
    else if (/^[1-9][0-9]*$/.test(part)) values.push(BigInt(part))
    else return null
  }
  const last = values[values.length - 1]
  const head = values.slice(0, -1)
  if (head.some(v => v > 255n)) return null
  const restBits = BigInt(8 * (4 - head.length))
  if (last >= (1n << restBits)) return null
  let n = 0n
  for (const v of head) n = (n << 8n) | v
  n = (n << restBits) | last
  return intToDotted(Number(n))
}

const uint32 = fc.integer({ min: 0, max: 0xffffffff })

const nonPublicV4 = fc.tuple(fc.constantFrom(...NON_PUBLIC_V4), uint32).map(([[base, bits], r]) => {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
  return ((v4ToInt(base) & mask) | (r & ~mask)) >>> 0
})

describe('properties', () => {
  it('every spelling of a non-public IPv4 address is denied', () => {
    fc.assert(fc.property(nonPublicV4, (n) => {
      for (const host of spellings(n)) {
        expect(parseTargetHost(host)).toEqual({ kind: 'ip', address: intToDotted(n), family: 4 })
        const d = policy.checkTarget(host, PORT)
        expect(d.allowed).toBe(false)
        expect(reasonOf(d)).not.toMatch(/^bad host/)
      }
      for (const host of wrappedSpellings(n)) expect(policy.checkTarget(host, PORT).allowed).toBe(false)
    }), { numRuns: 500 })
  })

  it('any IPv4 address is allowed exactly when it is outside the special ranges, in every spelling', () => {
    fc.assert(fc.property(uint32, (n) => {
      const expected = ![...NON_PUBLIC_V4, ...OTHER_SPECIAL_V4].some(r => inRange(n, r))
      for (const host of spellings(n)) {
        expect(policy.checkTarget(host, PORT).allowed).toBe(expected)
        expect(testnet.checkTarget(host, PORT).allowed).toBe(true)
      }
      expect(policy.checkAddress(intToDotted(n), PORT).allowed).toBe(expected)
    }), { numRuns: 1000 })
  })

  it('reads IPv4 literals exactly as inet_aton does', () => {
    const chars = fc.constantFrom(...'0123456789abcdefxX.'.split(''))
    // parts in every base, in and out of range, plus the awkward ones
    const value = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2 ** 33 }))
    const part = fc.oneof(
      value.map(String),
      value.map(v => `0${v.toString(8)}`),
      fc.tuple(value, fc.boolean(), fc.boolean()).map(([v, upperX, upperDigits]) => {
        const digits = v.toString(16)
        return `0${upperX ? 'X' : 'x'}${upperDigits ? digits.toUpperCase() : digits}`
      }),
      fc.constantFrom('0', '00', '0x', '08', '09', '0x0', '', '1e2', '-1')
    )
    const structured = fc.array(part, { minLength: 1, maxLength: 5 }).map(parts => parts.join('.'))
    let literals = 0
    let total = 0
    fc.assert(fc.property(fc.oneof(structured, fc.string({ unit: chars, minLength: 1, maxLength: 24 })), (s) => {
      const expected = refInetAton(s)
      let parsed: ReturnType<typeof parseTargetHost> | undefined
      try {
        parsed = parseTargetHost(s)
      } catch (err) {
        expect(err).toBeInstanceOf(BadHostError)
      }
      if (expected != null) expect(parsed).toEqual({ kind: 'ip', address: expected, family: 4 })
      else expect(parsed?.kind).not.toBe('ip')
      total++
      if (expected != null) literals++
    }), { numRuns: 5000 })
    // the generator must exercise both sides
    expect(literals).toBeGreaterThan(total / 10)
    expect(literals).toBeLessThan(total * 0.9)
  })

  it('every spelling of a non-public IPv6 address is denied', () => {
    const ranges: Array<[number, number]> = [[0xfc00, 0xfe00], [0xfe80, 0xffc0], [0xff00, 0xff00], [0x2001, 0xffff]]
    const group = fc.integer({ min: 0, max: 0xffff })
    fc.assert(fc.property(fc.constantFrom(...ranges), fc.array(group, { minLength: 8, maxLength: 8 }), ([prefix, mask], groups) => {
      groups[0] = (prefix & mask) | (groups[0] & ~mask & 0xffff)
      if (prefix === 0x2001) groups[1] = 0x0db8 // documentation
      const full = groups.map(g => g.toString(16)).join(':')
      for (const host of [full, full.toUpperCase(), `[${full}]`, groups.map(g => g.toString(16).padStart(4, '0')).join(':')]) {
        expect(policy.checkTarget(host, PORT).allowed).toBe(false)
      }
    }), { numRuns: 300 })
  })

  it('never throws anything but BadHostError, and checkTarget never throws', () => {
    const tricky = fc.constantFrom(...'0123456789abcdefxX.:[]%-_ \t\n\u0000/@ÿ\u212A'.split(''))
    const hosts = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      fc.string({ unit: tricky, maxLength: 48 }),
      fc.domain(),
      fc.ipV4(),
      fc.ipV4Extended(),
      fc.ipV6()
    )
    fc.assert(fc.property(hosts, (host) => {
      const err = thrown(() => parseTargetHost(host))
      if (err !== undefined) expect(err).toBeInstanceOf(BadHostError)
      const cls = thrown(() => classifyAddress(host))
      if (cls !== undefined) expect(cls).toBeInstanceOf(BadHostError)
      const d = policy.checkTarget(host, PORT)
      expect(typeof d.allowed).toBe('boolean')
      if (err !== undefined) expect(d.allowed).toBe(false)
      expect(typeof testnet.checkAddress(host, PORT).allowed).toBe('boolean')
    }), { numRuns: 3000 })
  })
})
