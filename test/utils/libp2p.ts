/**
 * A plain libp2p node for tests that need two real peers: TCP on loopback,
 * noise, yamux, no services, with the key given (or a fresh one).
 */

import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { noiseCrypto } from '../../src/node/noise-crypto.ts'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import type { ICryptoInterface } from '@chainsafe/libp2p-noise'

export async function loopbackNode (privateKey?: PrivateKey): Promise<Libp2p> {
  return createLibp2p({
    privateKey: privateKey ?? await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
}

/** Noise messages a node encrypted: all, and those under 1 KiB (window updates, frame tails, control). */
export interface NoiseMessageCounts { all: number, small: number }

/** The node's noise crypto provider, counting the messages it encrypts (a test's view of what goes on the wire). */
export function countingNoiseCrypto (): { crypto: ICryptoInterface, counts: NoiseMessageCounts } {
  const counts: NoiseMessageCounts = { all: 0, small: 0 }
  return {
    counts,
    crypto: {
      ...noiseCrypto,
      chaCha20Poly1305Encrypt: (plaintext, nonce, ad, k) => {
        counts.all++
        if (plaintext.byteLength < 1024) counts.small++
        return noiseCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k)
      }
    }
  }
}
