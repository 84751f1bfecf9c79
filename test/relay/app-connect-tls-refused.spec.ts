/**
 * TLS over node.connect() to a server that does not speak it (a plain HTTP
 * port): the app's TLS socket must fail once, with the handshake's error,
 * and never raise a second, unhandled one (which killed the node: `spareband
 * probe https://host:plain-port/` took it down).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { connect as tlsConnect } from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'
import { startExitAndConsumer } from '../utils/in-process.ts'
import { startTargetServer } from '../utils/target-server.ts'
import { probe } from '../../src/relay/probe.ts'
import type { SparebandNode } from '../../src/index.ts'
import type { TargetServer } from '../utils/target-server.ts'

describe('TLS through node.connect() to a plain HTTP port', () => {
  let exit: SparebandNode
  let consumer: SparebandNode
  let target: TargetServer
  const uncaught: Error[] = []
  const onUncaught = (err: Error): void => { uncaught.push(err) }

  beforeAll(async () => {
    target = await startTargetServer(1024)
    ;({ exit, consumer } = await startExitAndConsumer([target.port], { dataDirPrefix: 'sb-tls-refused-' }))
    process.on('uncaughtException', onUncaught)
  })
  afterAll(async () => {
    process.off('uncaughtException', onUncaught)
    await consumer?.stop()
    await exit?.stop()
    await target?.close()
  })

  it('fails the handshake once, with no second error, every time', async () => {
    const errors: string[] = []
    for (let i = 0; i < 8; i++) {
      const socket = await consumer.connect('127.0.0.1', target.port, { region: 'de' })
      const secure = tlsConnect({ socket, servername: 'localhost', rejectUnauthorized: false })
      await new Promise<void>(resolve => {
        secure.once('error', err => { errors.push((err as any).code ?? err.message); resolve() })
        secure.once('secureConnect', () => { errors.push('connected'); resolve() })
      })
      // what comes after the handshake's error: the pump's end of the tunnel, the TLS socket's teardown
      await sleep(200)
    }
    expect(uncaught.map(e => `${(e as any).code}: ${e.message}`)).toEqual([])
    expect(errors).toHaveLength(8)
    expect(errors.every(e => e !== 'connected')).toBe(true)
  })

  it('is a probe that fails with TLS, the node going on (spareband probe https://host:plain-port/)', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await probe(async (host, port, o) => consumer.connect(host, port, o), `https://127.0.0.1:${target.port}/`, { region: 'de', insecure: true })
      expect(r).toMatchObject({ ok: false, failure: 'TLS' })
      await sleep(200)
    }
    expect(uncaught).toEqual([])
    // the node still carries: a plain request through it works
    const plain = await probe(async (host, port, o) => consumer.connect(host, port, o), `http://127.0.0.1:${target.port}/hello`, { region: 'de' })
    expect(plain).toMatchObject({ ok: true, status: 200 })
  })
})
