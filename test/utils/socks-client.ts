/**
 * The tests' SOCKS5 client: the benches' (bench/lib/socks5-client.ts), with
 * every host sent as a domain name unless told otherwise, and the socket
 * handed back flowing, for tests that read with 'data' listeners.
 */

import { socks5Handshake } from '../../bench/lib/socks5-client.ts'
import type { Socks5Options, Socks5Result } from '../../bench/lib/socks5-client.ts'

export type SocksResult = Socks5Result

export async function socksConnect (proxyPort: number, host: string, port: number, options: Socks5Options = {}): Promise<SocksResult> {
  const result = await socks5Handshake(proxyPort, host, port, options)
  result.socket.on('error', () => {})
  result.socket.resume()
  return result
}
