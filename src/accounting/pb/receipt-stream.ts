import { decodeMessage, encodeMessage, MaxLengthError, message, streamMessage } from 'protons-runtime'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface ReceiptStreamMessage {
  receipt?: Uint8Array<ArrayBuffer>
  powNonce?: Uint8Array<ArrayBuffer>
  powDifficulty?: number
  error?: string
  pricePerGb?: bigint
  latest?: Latest
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

        if (obj.latest != null) {
          w.uint32(50)
          Latest.codec().encode(obj.latest, w)
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
            case 6: {
              obj.latest = Latest.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.latest
              })
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
            case 6: {
              yield * Latest.codec().stream(reader, reader.uint32(), `${prefix}.latest`, {
                limits: opts.limits?.latest
              })

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

  export interface ReceiptStreamMessageLatestReceiptsFieldEvent {
    field: '$.latest.receipts[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<ReceiptStreamMessage>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ReceiptStreamMessage.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReceiptStreamMessage>): ReceiptStreamMessage {
    return decodeMessage(buf, ReceiptStreamMessage.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReceiptStreamMessage>): Generator<ReceiptStreamMessageReceiptFieldEvent | ReceiptStreamMessagePowNonceFieldEvent | ReceiptStreamMessagePowDifficultyFieldEvent | ReceiptStreamMessageErrorFieldEvent | ReceiptStreamMessagePricePerGbFieldEvent | ReceiptStreamMessageLatestReceiptsFieldEvent> {
    return streamMessage(buf, ReceiptStreamMessage.codec(), opts)
  }
}

export interface Latest {
  receipts: Uint8Array<ArrayBuffer>[]
}

export namespace Latest {
  let _codec: Codec<Latest>

  export const codec = (): Codec<Latest> => {
    if (_codec == null) {
      _codec = message<Latest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.receipts != null && obj.receipts.length > 0) {
          for (const value of obj.receipts) {
            w.uint32(10)
            w.bytes(value)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          receipts: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.receipts != null && obj.receipts.length === opts.limits.receipts) {
                throw new MaxLengthError('Decode error - repeated field "receipts" had too many elements')
              }

              obj.receipts.push(reader.bytes())
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
          receipts: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              if (opts.limits?.receipts != null && obj.receipts === opts.limits.receipts) {
                throw new MaxLengthError('Streaming decode error - repeated field "receipts" had too many elements')
              }

              yield {
                field: `${prefix}.receipts[]`,
                index: obj.receipts,
                value: reader.bytes()
              }

              obj.receipts++

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

  export interface LatestReceiptsFieldEvent {
    field: '$.receipts[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<Latest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Latest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Latest>): Latest {
    return decodeMessage(buf, Latest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Latest>): Generator<LatestReceiptsFieldEvent> {
    return streamMessage(buf, Latest.codec(), opts)
  }
}
