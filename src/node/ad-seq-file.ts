/**
 * The last capacity-ad seq this exit signed, in the data directory
 * (`ad-seq.json`), so that its ads' seqs keep growing across restarts
 * whatever its clock does (see AdvertiserInit.seqStore). Written as the
 * exit's other state is, a temporary file renamed over the old one.
 */

import { readFileSync } from 'node:fs'
import { writeJsonAtomically } from '../relay/json-file.ts'

export const AD_SEQ_FILE = 'ad-seq.json'

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
      const seq = (JSON.parse(text) as { seq?: unknown }).seq
      if (typeof seq !== 'string' || !/^\d{1,20}$/.test(seq)) throw new Error(`${file}: "seq" is not a whole number in a string: ${JSON.stringify(seq)}`)
      return BigInt(seq)
    },
    save (seq) {
      writeJsonAtomically(file, { seq: seq.toString() })
    }
  }
}
