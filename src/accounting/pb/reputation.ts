import { decodeMessage, encodeMessage, message, streamMessage } from 'protons-runtime'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface ReputationReport {
  reporter?: Uint8Array<ArrayBuffer>
  subject?: Uint8Array<ArrayBuffer>
  issuedAt?: bigint
  windowSeconds?: number
  successes?: number
  failures?: number
  signature?: Uint8Array<ArrayBuffer>
}

export namespace ReputationReport {
  let _codec: Codec<ReputationReport>

  export const codec = (): Codec<ReputationReport> => {
    if (_codec == null) {
      _codec = message<ReputationReport>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.reporter != null) {
          w.uint32(10)
          w.bytes(obj.reporter)
        }

        if (obj.subject != null) {
          w.uint32(18)
          w.bytes(obj.subject)
        }

        if (obj.issuedAt != null) {
          w.uint32(24)
          w.uint64(obj.issuedAt)
        }

        if (obj.windowSeconds != null) {
          w.uint32(32)
          w.uint32(obj.windowSeconds)
        }

        if (obj.successes != null) {
          w.uint32(40)
          w.uint32(obj.successes)
        }

        if (obj.failures != null) {
          w.uint32(48)
          w.uint32(obj.failures)
        }

        if (obj.signature != null) {
          w.uint32(58)
          w.bytes(obj.signature)
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
              obj.reporter = reader.bytes()
              break
            }
            case 2: {
              obj.subject = reader.bytes()
              break
            }
            case 3: {
              obj.issuedAt = reader.uint64()
              break
            }
            case 4: {
              obj.windowSeconds = reader.uint32()
              break
            }
            case 5: {
              obj.successes = reader.uint32()
              break
            }
            case 6: {
              obj.failures = reader.uint32()
              break
            }
            case 7: {
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
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.reporter`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.subject`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.issuedAt`,
                value: reader.uint64()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.windowSeconds`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.successes`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.failures`,
                value: reader.uint32()
              }
              break
            }
            case 7: {
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

  export interface ReputationReportReporterFieldEvent {
    field: '$.reporter'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReputationReportSubjectFieldEvent {
    field: '$.subject'
    value: Uint8Array<ArrayBuffer>
  }

  export interface ReputationReportIssuedAtFieldEvent {
    field: '$.issuedAt'
    value: bigint
  }

  export interface ReputationReportWindowSecondsFieldEvent {
    field: '$.windowSeconds'
    value: number
  }

  export interface ReputationReportSuccessesFieldEvent {
    field: '$.successes'
    value: number
  }

  export interface ReputationReportFailuresFieldEvent {
    field: '$.failures'
    value: number
  }

  export interface ReputationReportSignatureFieldEvent {
    field: '$.signature'
    value: Uint8Array<ArrayBuffer>
  }

  export function encode (obj: Partial<ReputationReport>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, ReputationReport.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReputationReport>): ReputationReport {
    return decodeMessage(buf, ReputationReport.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<ReputationReport>): Generator<ReputationReportReporterFieldEvent | ReputationReportSubjectFieldEvent | ReputationReportIssuedAtFieldEvent | ReputationReportWindowSecondsFieldEvent | ReputationReportSuccessesFieldEvent | ReputationReportFailuresFieldEvent | ReputationReportSignatureFieldEvent> {
    return streamMessage(buf, ReputationReport.codec(), opts)
  }
}
