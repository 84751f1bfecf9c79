import { decodeMessage, encodeMessage, enumeration, message, streamMessage } from 'protons-runtime'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface TunnelRequest {
  sessionId?: string
  targetHost?: string
  targetPort?: number
}

export namespace TunnelRequest {
  let _codec: Codec<TunnelRequest>

  export const codec = (): Codec<TunnelRequest> => {
    if (_codec == null) {
      _codec = message<TunnelRequest>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.sessionId != null) {
          w.uint32(10)
          w.string(obj.sessionId)
        }

        if (obj.targetHost != null) {
          w.uint32(18)
          w.string(obj.targetHost)
        }

        if (obj.targetPort != null) {
          w.uint32(24)
          w.uint32(obj.targetPort)
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
              obj.targetHost = reader.string()
              break
            }
            case 3: {
              obj.targetPort = reader.uint32()
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
                field: `${prefix}.targetHost`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.targetPort`,
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

  export interface TunnelRequestSessionIdFieldEvent {
    field: '$.sessionId'
    value: string
  }

  export interface TunnelRequestTargetHostFieldEvent {
    field: '$.targetHost'
    value: string
  }

  export interface TunnelRequestTargetPortFieldEvent {
    field: '$.targetPort'
    value: number
  }

  export function encode (obj: Partial<TunnelRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, TunnelRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TunnelRequest>): TunnelRequest {
    return decodeMessage(buf, TunnelRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TunnelRequest>): Generator<TunnelRequestSessionIdFieldEvent | TunnelRequestTargetHostFieldEvent | TunnelRequestTargetPortFieldEvent> {
    return streamMessage(buf, TunnelRequest.codec(), opts)
  }
}

export interface TunnelResponse {
  status?: TunnelResponse.Status
  message?: string
}

export namespace TunnelResponse {
  export enum Status {
    UNUSED = 'UNUSED',
    OK = 'OK',
    POLICY_DENIED = 'POLICY_DENIED',
    DNS_FAILED = 'DNS_FAILED',
    CONNECT_REFUSED = 'CONNECT_REFUSED',
    UNREACHABLE = 'UNREACHABLE',
    TIMEOUT = 'TIMEOUT',
    QUOTA_EXCEEDED = 'QUOTA_EXCEEDED',
    RATE_LIMITED = 'RATE_LIMITED',
    OUTSIDE_SCHEDULE = 'OUTSIDE_SCHEDULE',
    INSUFFICIENT_CREDIT = 'INSUFFICIENT_CREDIT',
    BUSY = 'BUSY',
    BAD_REQUEST = 'BAD_REQUEST'
  }

  enum __StatusValues {
    UNUSED = 0,
    OK = 1,
    POLICY_DENIED = 2,
    DNS_FAILED = 3,
    CONNECT_REFUSED = 4,
    UNREACHABLE = 5,
    TIMEOUT = 6,
    QUOTA_EXCEEDED = 7,
    RATE_LIMITED = 8,
    OUTSIDE_SCHEDULE = 9,
    INSUFFICIENT_CREDIT = 10,
    BUSY = 11,
    BAD_REQUEST = 12
  }

  export namespace Status {
    export const codec = (): Codec<Status> => {
      return enumeration<Status>(__StatusValues)
    }
  }

  let _codec: Codec<TunnelResponse>

  export const codec = (): Codec<TunnelResponse> => {
    if (_codec == null) {
      _codec = message<TunnelResponse>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.status != null) {
          w.uint32(8)
          TunnelResponse.Status.codec().encode(obj.status, w)
        }

        if (obj.message != null) {
          w.uint32(18)
          w.string(obj.message)
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
              obj.status = TunnelResponse.Status.codec().decode(reader)
              break
            }
            case 2: {
              obj.message = reader.string()
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
                field: `${prefix}.status`,
                value: TunnelResponse.Status.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.message`,
                value: reader.string()
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

  export interface TunnelResponseStatusFieldEvent {
    field: '$.status'
    value: TunnelResponse.Status
  }

  export interface TunnelResponseMessageFieldEvent {
    field: '$.message'
    value: string
  }

  export function encode (obj: Partial<TunnelResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, TunnelResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TunnelResponse>): TunnelResponse {
    return decodeMessage(buf, TunnelResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<TunnelResponse>): Generator<TunnelResponseStatusFieldEvent | TunnelResponseMessageFieldEvent> {
    return streamMessage(buf, TunnelResponse.codec(), opts)
  }
}
