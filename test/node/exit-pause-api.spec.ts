/**
 * An app pauses and resumes its node's exit through the library, as
 * `spareband pause` does through the control API: pauseExit() and
 * resumeExit(), with the 'exit:pause' event. Real nodes on loopback, a
 * real tunnel refused while paused.
 */

import { expect, it } from 'vitest'
import { startExitAndConsumer, useExitAndConsumer } from '../utils/in-process.ts'
import { ConfigError, NotStartedError, TunnelRefusedError } from '../../src/index.ts'

const t = useExitAndConsumer()

it('pauseExit() refuses new tunnels until resumeExit(), each announced by exit:pause', async () => {
  const events: boolean[] = []
  t.exit.addEventListener('exit:pause', e => events.push(e.detail.paused))
  const availability: Array<string | null> = []
  t.exit.addEventListener('exit:availability', e => availability.push(e.detail.closed))
  const paused = t.exit.pauseExit()
  expect(paused.paused).toBe(true)
  expect(paused.pausedSince).toMatch(/^\d{4}-\d\d-\d\dT/)
  expect(t.exit.status().warnings.some(w => w.startsWith('the exit is paused'))).toBe(true)
  const refused = await t.consumer.connect('127.0.0.1', t.echo.port, { region: 'de' }).then(s => { s.destroy(); return undefined }, (err: unknown) => err)
  expect(refused).toBeInstanceOf(TunnelRefusedError)
  expect((refused as TunnelRefusedError).status).toBe('BUSY')

  expect(t.exit.resumeExit().paused).toBe(false)
  const socket = await t.consumer.connect('127.0.0.1', t.echo.port, { region: 'de' })
  socket.destroy()
  expect(events).toEqual([true, false])
  expect(availability).toEqual(['paused', null])
})

it('a node that is no exit says so, and a stopped one that it is not running', async () => {
  expect(() => t.consumer.pauseExit()).toThrow(ConfigError)
  expect(() => t.consumer.pauseExit()).toThrow('pauseExit() needs this node\'s exit, which exit.enabled = false turns off')
  const { exit: other, consumer: otherConsumer } = await startExitAndConsumer([t.echo.port])
  await otherConsumer.stop()
  await other.stop()
  expect(() => other.resumeExit()).toThrow(NotStartedError)
})
