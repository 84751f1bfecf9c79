/**
 * Bytes as multistream-select and libp2p's length-prefixed protocols frame
 * them, for the frame guard tests; and a node that collects its framing
 * refusals (what only the guards report).
 */

import { encode } from 'uint8-varint'
import { createSparebandNode } from '../../src/index.ts'
import { tempDir } from './cli.ts'
import type { PeerRefusalNotice } from '../../src/node/refusal-notices.ts'
import type { SparebandNode, SparebandConfigInput } from '../../src/index.ts'

/** A varint-length-prefixed frame. */
export const frame = (body: Uint8Array): Uint8Array => Buffer.concat([encode(body.byteLength), body])
/** A multistream-select line. */
export const line = (text: string): Uint8Array => frame(Buffer.from(`${text}\n`))
export const HEADER = line('/multistream/1.0.0')
/** Bytes that all say "more follows" where a length prefix is read. */
export const flood = (n: number): Uint8Array => new Uint8Array(n).fill(0xff)

/** A started node on loopback (local testnet, no exit) and the framing refusals it reports, as they come. */
export async function nodeWithFramingRefusals (dataDirPrefix: string, config: Record<string, unknown> = {}): Promise<{ node: SparebandNode, refusals: PeerRefusalNotice[] }> {
  const node = await createSparebandNode({
    dataDir: await tempDir(dataDirPrefix),
    config: { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, network: { local_testnet: true }, exit: { enabled: false }, ...config } as SparebandConfigInput
  })
  const refusals: PeerRefusalNotice[] = []
  node.addEventListener('node:refused', e => { if (e.detail.kind === 'framing') refusals.push(e.detail) })
  await node.start()
  return { node, refusals }
}
