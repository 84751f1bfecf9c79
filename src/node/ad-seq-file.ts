/**
 * The last capacity-ad seq this exit signed, in the data directory
 * (`ad-seq.json`), so that its ads' seqs keep growing across restarts
 * whatever its clock does (see AdvertiserInit.seqStore). Written as the
 * exit's other state is, a temporary file renamed over the old one.
 */

import { readFileSync } from 'node:fs'
import { writeJsonAtomically } from '../relay/json-file.ts'

export const AD_SEQ_FILE = 'ad-seq.json'

/** The largest seq taken from the file: 2^62, far past any clock (ms) and far below an ad's 2^63 - 1. */
export const MAX_KEPT_SEQ = 2n ** 62n

export function adSeqFile (file: string): { load: () => bigint | undefined, save: (seq: bigint) => void } {
  return {
    load () {
      let text: string
      try {
        text = readFileSync(file, 'utf8')
      } catch (err: any) {
        if (err.code === 'ENOENT') return undefined
        throw err
      }
      let seq: unknown
      try {
        seq = (JSON.parse(text) as { seq?: unknown } | null)?.seq
      } catch (err: any) {
        throw new Error(`${file}: not JSON (${err.message})`)
      }
      if (typeof seq !== 'string' || !/^\d{1,20}$/.test(seq)) throw new Error(`${file}: "seq" is not a whole number in a string: ${JSON.stringify(seq)}`)
      // an ad's seq is at most 2^63 - 1: a seq near it (no clock gets there; a file edited by hand
      // or broken) would leave no room to grow, and every ad after it would be refused
      if (BigInt(seq) > MAX_KEPT_SEQ) throw new Error(`${file}: "seq" ${seq} is past ${MAX_KEPT_SEQ}, too near the largest seq an ad takes (2^63 - 1) to sign more ads past it`)
      return BigInt(seq)
    },
    save (seq) {
      writeJsonAtomically(file, { seq: seq.toString() })
    }
  }
}
