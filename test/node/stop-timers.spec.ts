/**
 * A process that stops its node is free to exit: nothing the node or
 * libp2p armed keeps it up (libp2p 3's stop left timers that kept it 2 s;
 * see src/node/libp2p-stop-timers.ts). Asked of a child process, which
 * ends by itself or says what kept it.
 */

import { expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { join } from 'node:path'

it('leaves nothing that keeps the process alive once stop() resolved', async () => {
  const ended = await new Promise<{ code: number | null, stdout: string }>((resolve, reject) => {
    const child = execFile(process.execPath, ['--experimental-transform-types', '--no-warnings', join(import.meta.dirname, 'stopped-node-process.ts')], { timeout: 60_000 }, (err, stdout) => {
      if (err != null && typeof err.code !== 'number') reject(err)
      else resolve({ code: child.exitCode, stdout })
    })
  })
  expect(ended.stdout).toBe('stopped\n')
  expect(ended.code).toBe(0)
})
