import { decodeMessage, encodeMessage, MaxLengthError, message, streamMessage } from 'protons-runtime'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface CapacityAd {
  peerId?: Uint8Array<ArrayBuffer>
  region?: string
  capacityMbps?: number
  load?: number
  pricePerGb?: bigint
  allowedPorts?: string
  multiaddrs: Uint8Array<ArrayBuffer>[]
  seq?: bigint
  expiresAt?: bigint
  signature?: Uint8Array<ArrayBuffer>
}

export namespace CapacityAd {
  let _codec: Codec<CapacityAd>

  export const codec = (): Codec<CapacityAd> => {
    if (_codec == null) {
      _codec = message<CapacityAd>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.peerId != null) {
          w.uint32(10)
          w.bytes(obj.peerId)
        }

        if (obj.region != null) {
          w.uint32(18)
          w.string(obj.region)
        }

        if (obj.capacityMbps != null) {
          w.uint32(25)
          w.double(obj.capacityMbps)
        }

        if (obj.load != null) {
          w.uint32(33)
          w.double(obj.load)
        }

        if (obj.pricePerGb != null) {
          w.uint32(40)
          w.uint64(obj.pricePerGb)
        }

        if (obj.allowedPorts != null) {
          w.uint32(50)
          w.string(obj.allowedPorts)
        }

        if (obj.multiaddrs != null && obj.multiaddrs.length > 0) {
          for (const value of obj.multiaddrs) {
            w.uint32(58)
            w.bytes(value)
          }
        }

        if (obj.seq != null) {
          w.uint32(64)
          w.uint64(obj.seq)
        }

        if (obj.expiresAt != null) {
          w.uint32(72)
          w.uint64(obj.expiresAt)
        }

        if (obj.signature != null) {
          w.uint32(82)
          w.bytes(obj.signature)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          multiaddrs: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.peerId = reader.bytes()
              break
            }
            case 2: {
              obj.region = reader.string()
              break
            }
            case 3: {
              obj.capacityMbps = reader.double()
              break
            }
            case 4: {
              obj.load = reader.double()
              break
            }
            case 5: {
              obj.pricePerGb = reader.uint64()
              break
            }
            case 6: {
              obj.allowedPorts = reader.string()
              break
            }
            case 7: {
              if (opts.limits?.multiaddrs != null && obj.multiaddrs.length === opts.limits.multiaddrs) {
                throw new MaxLengthError('Decode error - repeated field "multiaddrs" had too many elements')
              }

              obj.multiaddrs.push(reader.bytes())
              break
            }
            case 8: {
              obj.seq = reader.uint64()
              break
            }
            case 9: {
              obj.expiresAt = reader.uint64()
              break
            }
            case 10: {
              obj.signature = reader.bytes()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          multiaddrs: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.peerId`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.region`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.capacityMbps`,
                value: reader.double()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.load`,
                value: reader.double()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.pricePerGb`,
                value: reader.uint64()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.allowedPorts`,
                value: reader.string()
              }
              break
            }
            case 7: {
              if (opts.limits?.multiaddrs != null && obj.multiaddrs === opts.limits.multiaddrs) {
                throw new MaxLengthError('Streaming decode error - repeated field "multiaddrs" had too many elements')
              }

              yield {
                field: `${prefix}.multiaddrs[]`,
                index: obj.multiaddrs,
                value: reader.bytes()
              }

              obj.multiaddrs++

              break
            }
            case 8: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.expiresAt`,
                value: reader.uint64()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.signature`,
                value: reader.bytes()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface CapacityAdPeerIdFieldEvent {
    field: '$.peerId'
    value: Uint8Array<ArrayBuffer>
  }

  export interface CapacityAdRegionFieldEvent {
    field: '$.region'
    value: string
  }

  export interface CapacityAdCapacityMbpsFieldEvent {
    field: '$.capacityMbps'
    value: number
  }

  export interface CapacityAdLoadFieldEvent {
    field: '$.load'
    value: number
  }

  export interface CapacityAdPricePerGbFieldEvent {
    field: '$.pricePerGb'
    value: bigint
  }

  export interface CapacityAdAllowedPortsFieldEvent {
    field: '$.allowedPorts'
    value: string
  }

  export interface CapacityAdMultiaddrsFieldEvent {
    field: '$.multiaddrs[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface CapacityAdSeqFieldEvent {
    field: '$.seq'
    value: bigint
  }

  export interface CapacityAdExpiresAtFieldEvent {
    field: '$.expiresAt'
    value: bigint
  }

  export interface CapacityAdSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<CapacityAd>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, CapacityAd.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<CapacityAd>): CapacityAd {
    return decodeMessage(buf, CapacityAd.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<CapacityAd>): Generator<CapacityAdPeerIdFieldEvent | CapacityAdRegionFieldEvent | CapacityAdCapacityMbpsFieldEvent | CapacityAdLoadFieldEvent | CapacityAdPricePerGbFieldEvent | CapacityAdAllowedPortsFieldEvent | CapacityAdMultiaddrsFieldEvent | CapacityAdSeqFieldEvent | CapacityAdExpiresAtFieldEvent | CapacityAdSignatureFieldEvent> {
    return streamMessage(buf, CapacityAd.codec(), opts)
  }
}
