/**
 * What a consumer signs for plain HTTP through its HTTP proxy: the bytes
 * the exit carried, not what its proxy wrote to the client. The proxy adds
 * its own X-Spareband-Exit header to each response (and may rewrite the
 * head), and those bytes never crossed the tunnel; metered as written, a
 * receipt signed about 70 bytes a response more than the exit carried.
 * Real nodes over TCP on loopback, in this process, and real curl.
 */

import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { startExitAndConsumer } from '../utils/in-process.ts'
import { sha256, startTargetServer } from '../utils/target-server.ts'
import { curl } from '../utils/network.ts'
import { waitFor } from '../utils/cli.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { TargetServer } from '../utils/target-server.ts'

describe('receipts for plain HTTP through the HTTP proxy', () => {
  let target: TargetServer
  let exit: SparebandNode
  let consumer: SparebandNode

  beforeAll(async () => {
    target = await startTargetServer(1024 * 1024)
    ;({ exit, consumer } = await startExitAndConsumer([target.port], { dataDirPrefix: 'sb-http-meter-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    await target?.close()
  })

  it('sign what the exit carried each way, not the header the proxy adds', async () => {
    const http = (consumer.status() as any).proxy.httpPort
    const sizes = Array.from({ length: 20 }, (_, i) => 100 + i * 997)
    for (const size of sizes) {
      const r = await curl(['-i', '--proxy', `http://127.0.0.1:${http}`, '--proxy-user', 'region-de:', `http://127.0.0.1:${target.port}/slice/${size}`])
      expect(r.stderr).toBe('')
      const end = r.stdout.indexOf('\r\n\r\n')
      // the client got the proxy's header, and the body byte for byte
      expect(r.stdout.subarray(0, end).toString('latin1')).toContain(`\r\nX-Spareband-Exit: ${exit.peerId.toString()}`)
      expect(sha256(r.stdout.subarray(end + 4))).toBe(sha256(target.blob.subarray(0, size)))
    }
    const carried = (exit.status() as any).exit
    expect(carried.bytesOut).toBeGreaterThan(sizes.reduce((a, b) => a + b, 0))
    // the consumer signs what is unsigned every 5 s: its last receipt covers all of it, exactly
    const signed = await waitFor(() => {
      const [row] = exit.receipts({ peer: consumer.peerId.toString() })
      return row != null && Number(row.bytesDown) + Number(row.bytesUp) >= carried.bytesOut + carried.bytesIn ? row : undefined
    }, { timeoutMs: 15_000, what: 'a receipt for everything carried' })
    expect([Number(signed?.bytesUp), Number(signed?.bytesDown)]).toEqual([carried.bytesIn, carried.bytesOut])
    // and the proxy's own counts (status, /metrics, the dashboard) agree with the exit's: its header came from no exit
    const proxy = (consumer.status() as any).proxy
    expect([proxy.bytesOut, proxy.bytesIn]).toEqual([carried.bytesIn, carried.bytesOut])
  })
})
