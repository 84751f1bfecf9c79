import { describe, it, expect, expectTypeOf, beforeAll, afterAll } from 'vitest'
import { Agent, createServer, request } from 'node:http'
import { startExitAndConsumer } from '../utils/in-process.ts'
import { waitFor } from '../utils/cli.ts'
import type { SparebandNode, TunnelSocket } from '../../src/index.ts'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'

/**
 * Tunnels as the sockets of an app's own http.Agent: node:http calls what
 * a net.Socket has beyond a Duplex (setKeepAlive, unref/ref on a pooled
 * socket, setTimeout for `timeout`, setNoDelay).
 */
describe('node.connect() tunnels in a keep-alive http.Agent', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let server: Server
  let port: number
  let connections = 0

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/slow') { setTimeout(() => res.end('late'), 3000); return }
      res.end(`ok ${req.url}`)
    })
    server.keepAliveTimeout = 30_000
    server.on('connection', () => { connections++ })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
    ;({ exit, consumer } = await startExitAndConsumer([port], { dataDirPrefix: 'sb-http-agent-' }))
  })
  afterAll(async () => {
    await consumer?.stop()
    await exit?.stop()
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })

  class TunnelAgent extends Agent {
    createConnection (options: any, callback: (err: Error | null, socket?: Duplex) => void): undefined {
      consumer.connect(options.host, Number(options.port), { region: 'de' }).then(s => { callback(null, s) }, err => { callback(err) })
      return undefined
    }
  }

  const get = async (agent: Agent, path: string, timeout?: number): Promise<string> => new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent, timeout }, res => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve(body))
    })
    req.on('timeout', () => { req.destroy(new Error('request timed out')) })
    req.on('error', reject)
    req.end()
  })

  it('keeps one tunnel for sequential requests, as it keeps one socket', async () => {
    const agent = new TunnelAgent({ keepAlive: true })
    const before = connections
    try {
      expect(await get(agent, '/1')).toBe('ok /1')
      expect(await get(agent, '/2')).toBe('ok /2')
      expect(await get(agent, '/3')).toBe('ok /3')
      expect(connections - before).toBe(1)
      expect((consumer.status() as any).proxy.tunnelsOpen).toBe(1)
    } finally {
      agent.destroy()
    }
    await waitFor(() => (consumer.status() as any).proxy.tunnelsOpen === 0, { timeoutMs: 5000, what: 'the pooled tunnel to close with the agent' })
  })

  it('its socket methods return the tunnel itself, typed so: a chained call keeps exit and setupMs', async () => {
    const socket = await consumer.connect('127.0.0.1', port, { region: 'de' })
    try {
      const chained = socket.setTimeout(60_000).setKeepAlive(true).setNoDelay(true).unref().ref()
      expectTypeOf(chained).toEqualTypeOf<TunnelSocket>()
      expect(chained).toBe(socket)
      expect(chained.exit).toBe(exit.peerId.toString())
      expect(chained.setupMs).toBeGreaterThan(0)
    } finally {
      socket.destroy()
    }
  })

  it('a request timeout fires on a tunnel (socket.setTimeout), and the app can give up on it', async () => {
    const agent = new TunnelAgent({ keepAlive: true })
    const started = Date.now()
    try {
      const err = await get(agent, '/slow', 500).then(() => 'answered', e => e.message)
      expect(err).toBe('request timed out')
      expect(Date.now() - started).toBeLessThan(2500)
    } finally {
      agent.destroy()
    }
  }, 10_000)
})
