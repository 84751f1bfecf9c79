import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Receipt {
  sessionId?: string
  consumer?: Uint8Array<ArrayBuffer>
  exit?: Uint8Array<ArrayBuffer>
  bytesUp?: bigint
  bytesDown?: bigint
  seq?: bigint
  startedAt?: bigint
  updatedAt?: bigint
  pricePerGb?: bigint
  consumerSig?: Uint8Array<ArrayBuffer>
  exitSig?: Uint8Array<ArrayBuffer>
}

export namespace Receipt {
  let _codec: Codec<Receipt>

  export const codec = (): Codec<Receipt> => {
    if (_codec == null) {
      _codec = message<Receipt>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.sessionId != null) {
          w.uint32(10)
          w.string(obj.sessionId)
        }

        if (obj.consumer != null) {
          w.uint32(18)
          w.bytes(obj.consumer)
        }

        if (obj.exit != null) {
          w.uint32(26)
          w.bytes(obj.exit)
        }

        if (obj.bytesUp != null) {
          w.uint32(32)
          w.uint64(obj.bytesUp)
        }

        if (obj.bytesDown != null) {
          w.uint32(40)
          w.uint64(obj.bytesDown)
        }

        if (obj.seq != null) {
          w.uint32(48)
          w.uint64(obj.seq)
        }

        if (obj.startedAt != null) {
          w.uint32(56)
          w.uint64(obj.startedAt)
        }

        if (obj.updatedAt != null) {
          w.uint32(64)
          w.uint64(obj.updatedAt)
        }

        if (obj.pricePerGb != null) {
          w.uint32(72)
          w.uint64(obj.pricePerGb)
        }

        if (obj.consumerSig != null) {
          w.uint32(82)
          w.bytes(obj.consumerSig)
        }

        if (obj.exitSig != null) {
          w.uint32(90)
          w.bytes(obj.exitSig)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {}

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.sessionId = reader.string()
              break
            }
            case 2: {
              obj.consumer = reader.bytes()
              break
            }
            case 3: {
              obj.exit = reader.bytes()
              break
            }
            case 4: {
              obj.bytesUp = reader.uint64()
              break
            }
            case 5: {
              obj.bytesDown = reader.uint64()
              break
            }
            case 6: {
              obj.seq = reader.uint64()
              break
            }
            case 7: {
              obj.startedAt = reader.uint64()
              break
            }
            case 8: {
              obj.updatedAt = reader.uint64()
              break
            }
            case 9: {
              obj.pricePerGb = reader.uint64()
              break
            }
            case 10: {
              obj.consumerSig = reader.bytes()
              break
            }
            case 11: {
              obj.exitSig = reader.bytes()
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
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.sessionId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.consumer`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.exit`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.bytesUp`,
                value: reader.uint64()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.bytesDown`,
                value: reader.uint64()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.startedAt`,
                value: reader.uint64()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.updatedAt`,
                value: reader.uint64()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.pricePerGb`,
                value: reader.uint64()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.consumerSig`,
                value: reader.bytes()
              }
              break
            }
            case 11: {
              yield {
                field: `${prefix}.exitSig`,
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

  export interface ReceiptSessionIdFieldEvent {
    field: '$.sessionId'
    value: string
  }

  export interface ReceiptConsumerFieldEvent {
    field: '$.consumer'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReceiptExitFieldEvent {
    field: '$.exit'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReceiptBytesUpFieldEvent {
    field: '$.bytesUp'
    value: bigint
  }

  export interface ReceiptBytesDownFieldEvent {
    field: '$.bytesDown'
    value: bigint
  }

  export interface ReceiptSeqFieldEvent {
    field: '$.seq'
    value: bigint
  }

  export interface ReceiptStartedAtFieldEvent {
    field: '$.startedAt'
    value: bigint
  }

  export interface ReceiptUpdatedAtFieldEvent {
    field: '$.updatedAt'
    value: bigint
  }

  export interface ReceiptPricePerGbFieldEvent {
    field: '$.pricePerGb'
    value: bigint
  }

  export interface ReceiptConsumerSigFieldEvent {
    field: '$.consumerSig'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReceiptExitSigFieldEvent {
    field: '$.exitSig'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Receipt>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Receipt.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Receipt>): Receipt {
    return decodeMessage(buf, Receipt.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Receipt>): Generator<ReceiptSessionIdFieldEvent | ReceiptConsumerFieldEvent | ReceiptExitFieldEvent | ReceiptBytesUpFieldEvent | ReceiptBytesDownFieldEvent | ReceiptSeqFieldEvent | ReceiptStartedAtFieldEvent | ReceiptUpdatedAtFieldEvent | ReceiptPricePerGbFieldEvent | ReceiptConsumerSigFieldEvent | ReceiptExitSigFieldEvent> {
    return streamMessage(buf, Receipt.codec(), opts)
  }
}

export interface ReceiptGossipExtension {
  consumerPowNonce?: Uint8Array<ArrayBuffer>
  consumerPowDifficulty?: number
}

export namespace ReceiptGossipExtension {
  let _codec: Codec<ReceiptGossipExtension>

  export const codec = (): Codec<ReceiptGossipExtension> => {
    if (_codec == null) {
      _codec = message<ReceiptGossipExtension>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.consumerPowNonce != null) {
          w.uint32(130)
          w.bytes(obj.consumerPowNonce)
        }

        if (obj.consumerPowDifficulty != null) {
          w.uint32(136)
          w.uint32(obj.consumerPowDifficulty)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {}

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 16: {
              obj.consumerPowNonce = reader.bytes()
              break
            }
            case 17: {
              obj.consumerPowDifficulty = reader.uint32()
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
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 16: {
              yield {
                field: `${prefix}.consumerPowNonce`,
                value: reader.bytes()
              }
              break
            }
            case 17: {
              yield {
                field: `${prefix}.consumerPowDifficulty`,
                value: reader.uint32()
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

  export interface ReceiptGossipExtensionConsumerPowNonceFieldEvent {
    field: '$.consumerPowNonce'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReceiptGossipExtensionConsumerPowDifficultyFieldEvent {
    field: '$.consumerPowDifficulty'
    value: number
  }

  export function encode (obj: Partial<ReceiptGossipExtension>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ReceiptGossipExtension.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReceiptGossipExtension>): ReceiptGossipExtension {
    return decodeMessage(buf, ReceiptGossipExtension.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReceiptGossipExtension>): Generator<ReceiptGossipExtensionConsumerPowNonceFieldEvent | ReceiptGossipExtensionConsumerPowDifficultyFieldEvent> {
    return streamMessage(buf, ReceiptGossipExtension.codec(), opts)
  }
}
