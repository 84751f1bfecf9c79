import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface ReceiptStreamMessage {
  receipt?: Uint8Array<ArrayBuffer>
  powNonce?: Uint8Array<ArrayBuffer>
  powDifficulty?: number
  error?: string
  pricePerGb?: bigint
}

export namespace ReceiptStreamMessage {
  let _codec: Codec<ReceiptStreamMessage>

  export const codec = (): Codec<ReceiptStreamMessage> => {
    if (_codec == null) {
      _codec = message<ReceiptStreamMessage>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.receipt != null) {
          w.uint32(10)
          w.bytes(obj.receipt)
        }

        if (obj.powNonce != null) {
          w.uint32(18)
          w.bytes(obj.powNonce)
        }

        if (obj.powDifficulty != null) {
          w.uint32(24)
          w.uint32(obj.powDifficulty)
        }

        if (obj.error != null) {
          w.uint32(34)
          w.string(obj.error)
        }

        if (obj.pricePerGb != null) {
          w.uint32(40)
          w.uint64(obj.pricePerGb)
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
              obj.receipt = reader.bytes()
              break
            }
            case 2: {
              obj.powNonce = reader.bytes()
              break
            }
            case 3: {
              obj.powDifficulty = reader.uint32()
              break
            }
            case 4: {
              obj.error = reader.string()
              break
            }
            case 5: {
              obj.pricePerGb = reader.uint64()
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
                field: `${prefix}.receipt`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.powNonce`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.powDifficulty`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.error`,
                value: reader.string()
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

  export interface ReceiptStreamMessageReceiptFieldEvent {
    field: '$.receipt'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReceiptStreamMessagePowNonceFieldEvent {
    field: '$.powNonce'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReceiptStreamMessagePowDifficultyFieldEvent {
    field: '$.powDifficulty'
    value: number
  }

  export interface ReceiptStreamMessageErrorFieldEvent {
    field: '$.error'
    value: string
  }

  export interface ReceiptStreamMessagePricePerGbFieldEvent {
    field: '$.pricePerGb'
    value: bigint
  }

  export function encode (obj: Partial<ReceiptStreamMessage>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ReceiptStreamMessage.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReceiptStreamMessage>): ReceiptStreamMessage {
    return decodeMessage(buf, ReceiptStreamMessage.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReceiptStreamMessage>): Generator<ReceiptStreamMessageReceiptFieldEvent | ReceiptStreamMessagePowNonceFieldEvent | ReceiptStreamMessagePowDifficultyFieldEvent | ReceiptStreamMessageErrorFieldEvent | ReceiptStreamMessagePricePerGbFieldEvent> {
    return streamMessage(buf, ReceiptStreamMessage.codec(), opts)
  }
}
