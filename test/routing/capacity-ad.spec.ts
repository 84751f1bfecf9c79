import { describe, it, expect, beforeAll } from 'vitest'
import fc from 'fast-check'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { concat } from 'uint8arrays/concat'
import { fromString } from 'uint8arrays/from-string'
import { toString } from 'uint8arrays/to-string'
import {
  CapacityAd, CapacityAdErrorCode, capacityAdAuthor, capacityKey, capacitySelector, capacityValidator, createCapacitySelector,
  createCapacityValidator, decodeCapacityAd, encodeCapacityAd, peerIdFromCapacityKey, regionCid, regionCidsFor,
  heldAdIsNewer, signCapacityAd, verifyCapacityAd
} from '../../src/routing/capacity-ad.ts'
import { Libp2pRecord } from '@libp2p/record'
import { MAX_AD_LIFETIME, MAX_CAPACITY_AD_BYTES } from '../../src/routing/constants.ts'
import type { CapacityAdInit } from '../../src/routing/capacity-ad.ts'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { SelectFn, ValidateFn } from '@libp2p/kad-dht'

// the exported functions must fit kad-dht 16's validator and selector maps
const asValidator: ValidateFn = capacityValidator
const asSelector: SelectFn = capacitySelector
void asValidator
void asSelector

const NOW = Date.UTC(2026, 10, 24, 12)
const hour = 3_600_000
const validator = createCapacityValidator({ now: () => NOW })
const selector = createCapacitySelector({ now: () => NOW })

const init = (over: Partial<CapacityAdInit> = {}): CapacityAdInit => ({
  region: 'de',
  capacityMbps: 100,
  load: 0.25,
  pricePerGbMicro: 500_000n,
  allowedPorts: '80,443,8000-8100',
  multiaddrs: ['/ip4/193.99.144.80/tcp/4001', '/ip6/2a00:1450:4001:80b::200e/tcp/4001'],
  seq: 7,
  expiresAt: NOW + 6 * hour,
  ...over
})

/**
 * Signs exactly as the wire contract says, independently of the code under
 * test, and without its field checks: how an attacker or a buggy peer
 * produces a record.
 */
async function signRaw (ad: CapacityAd, key: PrivateKey): Promise<Uint8Array> {
  const payload = concat([fromString('spareband-capacity-v1'), CapacityAd.encode({ ...ad, signature: undefined })])
  return CapacityAd.encode({ ...ad, signature: new Uint8Array(await key.sign(payload)) })
}

async function rejection (p: Promise<unknown>): Promise<{ name: string, code: string, meta: any }> {
  try {
    await p
  } catch (err: any) {
    return err
  }
  throw new Error('expected a rejection')
}

describe('capacity ads', () => {
  let alice: PrivateKey
  let bob: PrivateKey
  let aliceId: PeerId
  let bobId: PeerId

  beforeAll(async () => {
    alice = await generateKeyPair('Ed25519')
    bob = await generateKeyPair('Ed25519')
    aliceId = peerIdFromPrivateKey(alice)
    bobId = peerIdFromPrivateKey(bob)
  })

  const signed = async (over: Partial<CapacityAdInit> = {}, key = alice): Promise<Uint8Array> =>
    encodeCapacityAd(await signCapacityAd(init(over), key))

  /** A signed ad with some fields overridden, signed raw by `key`. */
  const rawAd = async (over: Partial<CapacityAd>, key = alice): Promise<Uint8Array> => {
    const base = await signCapacityAd(init(), key)
    return signRaw({ ...base, ...over }, key)
  }

  describe('keys', () => {
    it('capacityKey is /spareband/cap/ + the peer id multihash, in the `spareband` validator namespace', () => {
      const key = capacityKey(aliceId)
      expect(toString(key.subarray(0, 15))).toBe('/spareband/cap/')
      expect(key.subarray(15)).toEqual(aliceId.toMultihash().bytes)
      expect(toString(key).split('/')[1]).toBe('spareband')
      expect(peerIdFromCapacityKey(key).equals(aliceId)).toBe(true)
    })

    it('rejects keys that are not capacity keys', () => {
      expect(() => peerIdFromCapacityKey(fromString('/spareband/cap/'))).toThrow(expect.objectContaining({ code: CapacityAdErrorCode.BAD_KEY }))
      expect(() => peerIdFromCapacityKey(fromString('/pk/abc'))).toThrow(expect.objectContaining({ code: CapacityAdErrorCode.BAD_KEY }))
      expect(() => peerIdFromCapacityKey(fromString('/spareband/cap/xyz'))).toThrow(expect.objectContaining({ name: 'CapacityAdError' }))
    })

    it('regionCid follows docs/PROTOCOLS.md: CIDv1(raw, sha256("spareband:region:v1:" + region))', async () => {
      const expected = CID.createV1(raw.code, await sha256.digest(fromString('spareband:region:v1:de')))
      expect(regionCid('de').equals(expected)).toBe(true)
      expect(regionCid('de').version).toBe(1)
      expect(regionCid('de').code).toBe(raw.code)
    })

    it('regionCid is deterministic and normalises, country and subdivision differ', () => {
      expect(regionCid('us').toString()).toBe(regionCid('us').toString())
      expect(regionCid(' US ').toString()).toBe(regionCid('us').toString())
      expect(regionCid('us-ca').toString()).not.toBe(regionCid('us').toString())
      expect(regionCid('de').toString()).not.toBe(regionCid('us').toString())
      expect(regionCidsFor('us-ca').map(String)).toEqual([regionCid('us').toString(), regionCid('us-ca').toString()])
      expect(regionCidsFor('de').map(String)).toEqual([regionCid('de').toString()])
      expect(() => regionCid('xx')).toThrow(expect.objectContaining({ name: 'InvalidRegionError' }))
    })
  })

  describe('sign, encode, decode, verify', () => {
    it('round-trips every field', async () => {
      const bytes = await signed()
      const ad = decodeCapacityAd(bytes)
      expect(ad.peerId).toEqual(aliceId.toMultihash().bytes)
      expect(ad.signature?.byteLength).toBe(64)
      const v = await verifyCapacityAd(ad, { now: NOW })
      expect(v.peerId.equals(aliceId)).toBe(true)
      expect(v).toMatchObject({ region: 'de', capacityMbps: 100, load: 0.25, pricePerGbMicro: 500_000n, seq: 7n, expiresAt: NOW + 6 * hour })
      expect(v.allowedPortsText).toBe('80,443,8000-8100')
      expect(v.allowedPorts).toEqual([[80, 80], [443, 443], [8000, 8100]])
      expect(v.multiaddrs.map(String)).toEqual(['/ip4/193.99.144.80/tcp/4001', '/ip6/2a00:1450:4001:80b::200e/tcp/4001'])
    })

    it('normalises the region before signing and accepts Multiaddr objects and bytes', async () => {
      const ma = multiaddr('/ip4/1.2.3.4/tcp/1')
      const ad = await signCapacityAd(init({ region: ' US-CA ', multiaddrs: [ma, ma.bytes] }), alice)
      const v = await verifyCapacityAd(ad, { now: NOW })
      expect(v.region).toBe('us-ca')
      expect(v.multiaddrs.map(String)).toEqual(['/ip4/1.2.3.4/tcp/1', '/ip4/1.2.3.4/tcp/1'])
    })

    it('refuses to sign what the validator would refuse', async () => {
      for (const over of [
        { region: 'xx' }, { load: 1.5 }, { load: Number.NaN }, { capacityMbps: -1 }, { allowedPorts: '80,http' },
        { allowedPorts: '' }, { seq: 1.5 }, { multiaddrs: Array.from({ length: 17 }, (_, i) => `/ip4/1.2.3.${i}/tcp/1`) },
        { multiaddrs: ['not a multiaddr'] }
      ] satisfies Array<Partial<CapacityAdInit>>) {
        const err = await rejection(signCapacityAd(init(over), alice))
        expect(err).toMatchObject({ name: 'CapacityAdError', code: CapacityAdErrorCode.INVALID_FIELD })
      }
    })

    it('decoding garbage or oversized bytes throws a CapacityAdError', () => {
      expect(() => decodeCapacityAd(new Uint8Array([0x0a, 0xff]))).toThrow(expect.objectContaining({ code: CapacityAdErrorCode.MALFORMED }))
      expect(() => decodeCapacityAd(new Uint8Array(MAX_CAPACITY_AD_BYTES + 1))).toThrow(expect.objectContaining({ code: CapacityAdErrorCode.TOO_LARGE }))
      expect(() => encodeCapacityAd({ multiaddrs: [], allowedPorts: 'x'.repeat(MAX_CAPACITY_AD_BYTES) })).toThrow(expect.objectContaining({ code: CapacityAdErrorCode.TOO_LARGE }))
    })
  })

  describe('validator', () => {
    it('accepts a valid record on the wall clock too', async () => {
      await expect(validator(capacityKey(aliceId), await signed())).resolves.toBeUndefined()
      await expect(capacityValidator(capacityKey(aliceId), await signed({ expiresAt: Date.now() + hour }))).resolves.toBeUndefined()
    })

    it('rejects a forged record: Alice\'s id, signed by Bob', async () => {
      const forged = await rawAd({ peerId: aliceId.toMultihash().bytes }, bob)
      const err = await rejection(validator(capacityKey(aliceId), forged))
      expect(err).toMatchObject({ name: 'CapacityAdError', code: CapacityAdErrorCode.BAD_SIGNATURE })
    })

    it('another spelling of a signed ad is the same ad: valid, and neither wins nor loses the selector\'s tie by its bytes', async () => {
      const bytes = await signed()
      // the first field (the peer id: tag, one-byte length, bytes) given twice: the same ad to a decoder
      expect(bytes[0]).toBe(0x0a)
      const twice = concat([bytes.subarray(0, 2 + bytes[1]), bytes])
      expect(CapacityAd.decode(twice)).toEqual(CapacityAd.decode(bytes))
      await expect(validator(capacityKey(aliceId), twice)).resolves.toBeUndefined()
      // a tie of seq and expiry is broken by the ad's own encoding, so the first given stays: it was
      // broken by the bytes received, and a spelling of a peer's own could rank the exit's bytes below it
      expect(selector(capacityKey(aliceId), [bytes, twice])).toBe(0)
      expect(selector(capacityKey(aliceId), [twice, bytes])).toBe(0)
    })

    it('rejects a tampered record', async () => {
      const ad = decodeCapacityAd(await signed())
      for (const tampered of [{ ...ad, load: 0 }, { ...ad, pricePerGb: 1n }, { ...ad, seq: 8n }, { ...ad, region: 'fr' }, { ...ad, multiaddrs: [] }]) {
        const err = await rejection(validator(capacityKey(aliceId), CapacityAd.encode(tampered)))
        expect(err.code).toBe(CapacityAdErrorCode.BAD_SIGNATURE)
      }
    })

    it('rejects a missing signature', async () => {
      const ad = decodeCapacityAd(await signed())
      const err = await rejection(validator(capacityKey(aliceId), CapacityAd.encode({ ...ad, signature: undefined })))
      expect(err).toMatchObject({ code: CapacityAdErrorCode.BAD_SIGNATURE, meta: { missing: true } })
    })

    it('rejects a valid record stored under another peer\'s key', async () => {
      const err = await rejection(validator(capacityKey(bobId), await signed()))
      expect(err.code).toBe(CapacityAdErrorCode.PEER_MISMATCH)
    })

    it('rejects expired records', async () => {
      expect((await rejection(validator(capacityKey(aliceId), await signed({ expiresAt: NOW - 1 })))).code).toBe(CapacityAdErrorCode.EXPIRED)
      expect((await rejection(validator(capacityKey(aliceId), await signed({ expiresAt: NOW })))).code).toBe(CapacityAdErrorCode.EXPIRED)
      // a record valid at signing expires on the checker's clock
      const later = createCapacityValidator({ now: () => NOW + 7 * hour })
      expect((await rejection(later(capacityKey(aliceId), await signed()))).code).toBe(CapacityAdErrorCode.EXPIRED)
    })

    it('rejects records that claim to live longer than MAX_AD_LIFETIME', async () => {
      await expect(validator(capacityKey(aliceId), await signed({ expiresAt: NOW + MAX_AD_LIFETIME }))).resolves.toBeUndefined()
      const err = await rejection(validator(capacityKey(aliceId), await signed({ expiresAt: NOW + MAX_AD_LIFETIME + hour })))
      expect(err.code).toBe(CapacityAdErrorCode.TOO_FAR_IN_FUTURE)
    })

    it('rejects oversized records before decoding them', async () => {
      const valid = await signed()
      // a valid record padded with an unknown length-delimited field (15) of 4 KiB
      const pad = concat([new Uint8Array([0x7a, 0x80, 0x20]), new Uint8Array(4096)])
      const err = await rejection(validator(capacityKey(aliceId), concat([valid, pad])))
      expect(err).toMatchObject({ code: CapacityAdErrorCode.TOO_LARGE, meta: { max: MAX_CAPACITY_AD_BYTES } })
    })

    it('rejects invalid fields even when properly signed', async () => {
      const ma = (s: string): Uint8Array<ArrayBuffer> => multiaddr(s).bytes
      const longMa = ma(`/dns4/${'a'.repeat(250)}.example/tcp/1`)
      const cases: Array<[Partial<CapacityAd>, string]> = [
        [{ region: 'xx' }, 'region'],
        [{ region: 'DE' }, 'region'], // not canonical: peers would derive different region keys
        [{ region: 'germany' }, 'region'],
        [{ region: undefined }, 'region'],
        [{ load: 1.01 }, 'load'],
        [{ load: -0.1 }, 'load'],
        [{ load: Number.NaN }, 'load'],
        [{ capacityMbps: -5 }, 'capacity_mbps'],
        [{ capacityMbps: Number.POSITIVE_INFINITY }, 'capacity_mbps'],
        [{ allowedPorts: '80-' }, 'allowed_ports'],
        [{ allowedPorts: '0' }, 'allowed_ports'],
        [{ multiaddrs: Array.from({ length: 17 }, (_, i) => ma(`/ip4/1.2.3.${i}/tcp/1`)) }, 'multiaddrs'],
        [{ multiaddrs: [longMa] }, 'multiaddrs'],
        [{ multiaddrs: [new Uint8Array([0xff, 0xff, 0xff])] }, 'multiaddrs'],
        [{ multiaddrs: [new Uint8Array(0)] }, 'multiaddrs'],
        [{ seq: undefined }, 'seq'],
        [{ expiresAt: 1n << 63n }, 'expires_at']
      ]
      expect(longMa.byteLength).toBeGreaterThan(256)
      for (const [over, field] of cases) {
        const err = await rejection(validator(capacityKey(aliceId), await rawAd(over)))
        expect(err, JSON.stringify(over, (_, v) => typeof v === 'bigint' ? String(v) : v)).toMatchObject({ code: CapacityAdErrorCode.INVALID_FIELD, meta: { field } })
      }
    })

    it('never throws anything but a CapacityAdError, whatever the bytes', async () => {
      const valid = await signed()
      await fc.assert(fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }),
          // single-byte mutations of a valid record
          fc.record({ pos: fc.nat({ max: valid.byteLength - 1 }), byte: fc.integer({ min: 0, max: 255 }) }).map(({ pos, byte }) => {
            const b = valid.slice()
            b[pos] = byte
            return b
          })
        ),
        async (bytes) => {
          try {
            await validator(capacityKey(aliceId), bytes)
          } catch (err: any) {
            expect(err.name).toBe('CapacityAdError')
          }
        }
      ), { numRuns: 300 })
    })
  })

  describe('for the DHT store', () => {
    const record = (key: Uint8Array, value: Uint8Array): Uint8Array => new Libp2pRecord(key, value, new Date()).serialize()

    it('capacityAdAuthor names the exit a capacity key names, and nobody for other keys', () => {
      expect(capacityAdAuthor(capacityKey(aliceId))).toBe(aliceId.toString())
      expect(capacityAdAuthor(fromString(`/pk/${aliceId.toString()}`))).toBeUndefined()
    })

    it('heldAdIsNewer: the held record stays when the selector ranks it higher; a tie, an expired held one or bytes that are no record let the write through', async () => {
      const key = capacityKey(aliceId)
      const live = Date.now() + hour
      const older = record(key, await signed({ seq: 1, expiresAt: live }))
      const newer = record(key, await signed({ seq: 2, expiresAt: live }))
      expect(heldAdIsNewer(older, newer)).toBe(true)
      expect(heldAdIsNewer(newer, older)).toBe(false)
      expect(heldAdIsNewer(newer, newer)).toBe(false)
      expect(heldAdIsNewer(older, record(key, await signed({ seq: 2, expiresAt: Date.now() - 1000 })))).toBe(false)
      expect(heldAdIsNewer(older, new Uint8Array([1, 2, 3]))).toBe(false)
    })
  })

  describe('selector', () => {
    it('picks the valid record with the highest seq', async () => {
      const records = [await signed({ seq: 1 }), await signed({ seq: 3 }), await signed({ seq: 2 })]
      expect(selector(capacityKey(aliceId), records)).toBe(1)
      expect(capacitySelector(capacityKey(aliceId), [await signed({ seq: 1, expiresAt: Date.now() + hour }), await signed({ seq: 2, expiresAt: Date.now() + hour })])).toBe(1)
    })

    it('a replayed older record loses to the current one, in any order', async () => {
      const current = await signed({ seq: 5, load: 0.9 })
      const replayed = await signed({ seq: 4, load: 0.1 })
      expect(selector(capacityKey(aliceId), [current, replayed])).toBe(0)
      expect(selector(capacityKey(aliceId), [replayed, current])).toBe(1)
    })

    it('invalid records never win, however high their seq', async () => {
      const valid = await signed({ seq: 2 })
      const forged = await rawAd({ peerId: aliceId.toMultihash().bytes, seq: 100n }, bob)
      const tampered = CapacityAd.encode({ ...decodeCapacityAd(await signed({ seq: 3 })), seq: 99n })
      const expired = await signed({ seq: 50, expiresAt: NOW - 1 })
      const otherPeer = await signed({ seq: 60 }, bob)
      const garbage = new Uint8Array([1, 2, 3])
      expect(selector(capacityKey(aliceId), [forged, tampered, expired, otherPeer, garbage, valid])).toBe(5)
      expect(selector(capacityKey(aliceId), [forged, tampered, expired, garbage])).toBe(-1)
      expect(selector(fromString('/spareband/cap/'), [valid])).toBe(-1)
    })

    it('breaks equal seqs the same way whatever the order, so peers converge', async () => {
      const a = await signed({ seq: 9, load: 0.1 })
      const b = await signed({ seq: 9, load: 0.2 })
      const c = await signed({ seq: 9, load: 0.3, expiresAt: NOW + 2 * hour })
      const pick = (rs: Uint8Array[]): Uint8Array => rs[selector(capacityKey(aliceId), rs)]
      expect(pick([a, b, c])).toEqual(pick([c, b, a]))
      expect(pick([a, b])).toEqual(pick([b, a]))
      // c expires earlier than a and b, so it never wins the tie
      expect(decodeCapacityAd(pick([c, a, b])).expiresAt).toBe(BigInt(NOW + 6 * hour))
    })
  })
})
