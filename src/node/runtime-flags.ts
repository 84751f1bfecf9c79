/**
 * Node flags a spareband node runs with: the `spareband` command relaunches
 * itself with them, and `npm start`, the testnet's child nodes and the
 * benches pass them. Apps that embed the library should start node with
 * them too, on node's command line (`node --max-semi-space-size=1
 * --initial-old-space-size=128 app.js`: node refuses the second in
 * NODE_OPTIONS); they are tuning, not correctness. A flag the operator gave
 * with another value is their choice and is left as it is.
 *
 * `--max-semi-space-size=1` (MiB; node's default lets the young generation
 * grow to 16): every chunk a node carries is an ArrayBuffer (socket reads,
 * noise's ciphertext and plaintext) whose memory lives outside the JS heap.
 * A large young generation is scavenged seldom, so dead buffers pile up
 * outside the heap until V8's external-memory limit starts a full
 * mark-compact of the whole heap, about every 15 MiB carried. With a small
 * young generation the buffers die in cheap scavenges instead. On the tunnel
 * bench this halved CPU per MiB (14-17 ms to about 8 ms, GC helper threads
 * from ~45 % of the CPU to under 10 %) and raised bare-stream and tunnel
 * throughput by ~70 %.
 *
 * The cost: objects that live a little while are promoted sooner. That is
 * right for one node per process, but a process hosting many nodes (the
 * routing bench's 30) got three times slower with it, and an app with a
 * large, busy heap of its own should measure before adopting it.
 *
 * `--initial-old-space-size=128` (MiB): a node's live heap is about 35 MiB,
 * and in `--trace-gc` runs without this flag full collections began 1-2 MiB
 * above it. Everything a busy node keeps for a few milliseconds (a receipt
 * in flight, a ledger batch, a chunk in a queue) is promoted with the small
 * young generation above, so a node with accounting on ran 2-3 full
 * mark-compacts per 128 MiB tunnelled, each freeing 1-2 MiB and keeping
 * V8's marking threads busy. That was most of what accounting cost: CPU
 * per MiB +44 % and +61 % over accounting off (medians of same-round pairs,
 * two bench runs), against +20.5 % and +22.2 % with this flag, interleaved
 * runs. With it, the bench's pairs ran no full collection in 6 rounds, and
 * a pair carrying 3.8 GiB each way ran one in all (at about 70 MiB, in one
 * of its two processes). The cost: up to that much more heap under load
 * before a full collection. Not measured: a process hosting many nodes
 * with it.
 */
export const NODE_RUNTIME_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--initial-old-space-size=128']

/** Set to 1 to run the command as started, without the relaunch. */
export const NO_RELAUNCH_ENV = 'SPAREBAND_NO_RELAUNCH'

/** `--max-semi-space-size=1` -> `--max-semi-space-size`; V8 takes `_` for `-` in flag names. */
function flagName (arg: string): string {
  return arg.split('=')[0].replaceAll('_', '-')
}

/**
 * The runtime flags node was not started with, by name, neither on its
 * command line nor in NODE_OPTIONS. A flag given with another value counts
 * as given: the operator chose it.
 */
export function missingRuntimeFlags (execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map(flagName))
  return NODE_RUNTIME_FLAGS.filter(flag => !given.has(flagName(flag)))
}

/**
 * Replaces this process with node started with the missing runtime flags and
 * the same script, arguments and environment (`process.execve`: same
 * process id, nothing to forward). Where node cannot (Windows, a node before
 * 22.15), or when SPAREBAND_NO_RELAUNCH=1, the command runs as it was
 * started: the flags are tuning only. So does a process with an IPC channel
 * to its parent, which the new image would not inherit: such a parent (the
 * testnet) passes the flags itself.
 */
export function relaunchWithRuntimeFlags (): void {
  const missing = missingRuntimeFlags()
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve
  if (missing.length === 0 || typeof execve !== 'function' || process.platform === 'win32' || process.env[NO_RELAUNCH_ENV] === '1' || process.channel != null) return
  try {
    execve(process.execPath, [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)], process.env)
  } catch {
    // the exec failed and this process goes on: run as started
  }
}
