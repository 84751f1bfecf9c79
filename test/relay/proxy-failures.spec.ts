/**
 * What the consumer's operator learns of tunnels no exit carried. A SOCKS
 * client sees a reply code and an HTTP client the last exit's refusal, and
 * the consumer's log and status had nothing: an exit that refused it for
 * its credit, its quota or a pause was visible only in the exit's log.
 * Two exits in de, one paused and one outside its schedule, and a
 * consumer; real nodes over TCP on loopback, in this process, real curl.
 */

import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { connect } from 'node:net'
import { createSparebandNode } from '../../src/index.ts'
import { startTargetServer } from '../utils/target-server.ts'
import { curl } from '../utils/network.ts'
import { tempDir, waitFor } from '../utils/cli.ts'
import type { ProxyFailureNotice, SparebandNode } from '../../src/index.ts'
import type { TargetServer } from '../utils/target-server.ts'

describe('tunnels no exit carried, as the consumer sees them', () => {
  let target: TargetServer
  let paused: SparebandNode
  let closed: SparebandNode
  let consumer: SparebandNode
  const notices: ProxyFailureNotice[] = []
  const base = { listen: ['/ip4/127.0.0.1/tcp/0'], api: { port: 0 }, proxy: { socks_port: 0, http_port: 0 }, accounting: { pow_difficulty: 8 } }

  beforeAll(async () => {
    target = await startTargetServer(1024)
    const exit = async (extra: Record<string, unknown>): Promise<SparebandNode> => {
      const node = await createSparebandNode({ dataDir: await tempDir('sb-failures-'), config: { ...base, region: 'de', network: { local_testnet: true }, exit: { allow_private_targets: true, allowed_ports: [target.port], ...extra } } })
      await node.start()
      return node
    }
    paused = await exit({})
    paused.pauseExit()
    closed = await exit({ schedule: 'never' })
    consumer = await createSparebandNode({ dataDir: await tempDir('sb-failures-'), config: { ...base, network: { local_testnet: true, bootstrap: [...paused.status().addresses, ...closed.status().addresses] }, exit: { enabled: false } } })
    consumer.addEventListener('proxy:failed', e => notices.push(e.detail))
    await consumer.start()
    await waitFor(async () => (await consumer.peers()).filter(p => p.agent?.includes('exit')).length === 2, { what: 'identify of both exits' })
  })
  afterAll(async () => {
    await consumer?.stop()
    await paused?.stop()
    await closed?.stop()
    await target?.close()
  })

  it('tells the client every exit\'s refusal, and the operator too, with counts by status', async () => {
    const http = (consumer.status() as any).proxy.httpPort
    const r = await curl(['-i', '--proxy', `http://127.0.0.1:${http}`, '--proxy-user', 'region-de:', `http://127.0.0.1:${target.port}/hello`])
    const text = r.stdout.toString()
    expect(text).toMatch(/^HTTP\/1\.1 503 /)
    // the last exit's status, and what the one asked before it said
    const last = /^X-Spareband-Status: (\S+)\r$/m.exec(text)?.[1]
    expect(['BUSY', 'OUTSIDE_SCHEDULE']).toContain(last)
    expect(text).toContain('exit paused by its operator')
    expect(text).toContain('the exit does not share at all now (exit.schedule "never")')
    expect(text).toContain(`an exit asked before: ${(last === 'BUSY' ? closed : paused).peerId.toString()} ${last === 'BUSY' ? 'OUTSIDE_SCHEDULE' : 'BUSY'}: `)
    expect(target.connections).toBe(0)

    await waitFor(() => notices.length === 1, { what: 'the failure notice' })
    expect(notices[0]).toMatchObject({ outcome: last, fromTarget: false, target: `127.0.0.1:${target.port}`, suppressed: 0 })
    expect(notices[0].exit).toBe((last === 'BUSY' ? paused : closed).peerId.toString())
    expect(notices[0].reason).toContain('asked before')
    const proxy = (consumer.status() as any).proxy
    expect(proxy.failed).toBe(1)
    expect(proxy.failedByStatus).toEqual({ [last!]: 1 })

    // no exit at all, and a user name that names none (the proxy's own refusal, not a failed tunnel)
    const none = await curl(['-i', '--proxy', `http://127.0.0.1:${http}`, '--proxy-user', 'region-fr:', `http://127.0.0.1:${target.port}/hello`])
    expect(none.stdout.toString()).toContain('NO_EXIT: no exit known in region fr')
    const bad = await curl(['-i', '--proxy', `http://127.0.0.1:${http}`, '--proxy-user', 'region-xx:', `http://127.0.0.1:${target.port}/hello`])
    expect(bad.stdout.toString()).toMatch(/^HTTP\/1\.1 400 /)
    await waitFor(() => notices.length === 2, { what: 'the next notice' })
    expect(notices[1]).toMatchObject({ outcome: 'NO_EXIT', fromTarget: false, exit: undefined, reason: 'no exit known in region fr' })
    const after = (consumer.status() as any).proxy
    expect(after.failed).toBe(2)
    expect(after.failedByStatus).toEqual({ [last!]: 1, NO_EXIT: 1 })
    expect(after.refused).toEqual({ targeting: 1, credentials: 0 })
  })

  it('keeps no connection of a refused client that closed: SOCKS5 refusals (after the tunnel search, and of a command it does not take) and HTTP ones', async () => {
    const proxy = (): any => consumer.status().proxy
    const open = proxy().clientsOpen
    /** Sends `request` at once, reads the answer to the proxy's FIN, then closes its side; resolves with the answer once closed. */
    const refusedAndClosed = async (port: number, request: Buffer): Promise<Buffer> => new Promise((resolve, reject) => {
      const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
      const chunks: Buffer[] = []
      client.on('data', d => chunks.push(d))
      client.once('error', reject)
      client.once('connect', () => client.write(request))
      client.once('end', () => client.end())
      client.once('close', () => resolve(Buffer.concat(chunks)))
    })
    const connectTo = (command: number): Buffer => Buffer.from([0x05, 0x01, 0x00, 0x05, command, 0x00, 0x01, 127, 0, 0, 1, target.port >> 8, target.port & 0xff])
    for (let i = 0; i < 4; i++) {
      // CONNECT, no user name: the paused exit and the closed one refuse it
      const answer = await refusedAndClosed(proxy().socksPort, connectTo(0x01))
      expect(answer.subarray(0, 2)).toEqual(Buffer.from([0x05, 0x00]))
      expect(answer[3]).not.toBe(0x00)
    }
    // UDP ASSOCIATE: command not supported (0x07)
    expect((await refusedAndClosed(proxy().socksPort, connectTo(0x03))).subarray(2, 4)).toEqual(Buffer.from([0x05, 0x07]))
    const http = await refusedAndClosed(proxy().httpPort, Buffer.from(`CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\nHost: x\r\n\r\n`))
    expect(http.toString('latin1')).toMatch(/^HTTP\/1\.1 503 /)
    // each closed by the proxy as soon as its client's FIN came, not after the 10 s a client that stays is given
    await waitFor(() => proxy().clientsOpen === open, { what: 'the proxy to let every refused client go', timeoutMs: 3000 })
    expect(target.connections).toBe(0)
  })

  it('answers a user name that is not UTF-8 with RFC 1929\'s failure status, not a dropped connection', async () => {
    const socks = (consumer.status() as any).proxy.socksPort
    const before = (consumer.status() as any).proxy.refused.credentials
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const client = connect({ port: socks, host: '127.0.0.1', allowHalfOpen: true })
      const chunks: Buffer[] = []
      client.on('data', d => chunks.push(d))
      client.once('error', reject)
      // greeting offering username/password, then a sub-negotiation whose user name is 0xff 0xfe
      client.once('connect', () => client.write(Buffer.from([0x05, 0x01, 0x02, 0x01, 0x02, 0xff, 0xfe, 0x01, 0x78])))
      client.once('end', () => client.end())
      client.once('close', () => resolve(Buffer.concat(chunks)))
    })
    expect(answer).toEqual(Buffer.from([0x05, 0x02, 0x01, 0x01]))
    expect((consumer.status() as any).proxy.refused.credentials).toBe(before + 1)
    expect(target.connections).toBe(0)
  })
})
