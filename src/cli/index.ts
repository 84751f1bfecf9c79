#!/usr/bin/env node
/**
 * The `spareband` command's entry point. It first makes sure node runs with
 * the node runtime flags (src/node/runtime-flags.ts), replacing this process
 * with one that has them where node can (same process id, so signals and
 * supervisors see no difference), and only then loads the command line: a
 * dynamic import, so a relaunch does not load it twice.
 */

import { relaunchWithRuntimeFlags } from '../node/runtime-flags.ts'
import { catchEarlySignals } from './graceful-shutdown.ts'

relaunchWithRuntimeFlags()
// a node being started stops cleanly on a signal that comes while it loads (see catchEarlySignals);
// only for start: any other command would ignore Ctrl-C for its whole run
if (commandWord(process.argv.slice(2)) === 'start') catchEarlySignals()

/** The command named in `args`: the first that is no option, past the global --data-dir's value. */
function commandWord (args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--data-dir') i++
    else if (!args[i].startsWith('-')) return args[i]
  }
  return undefined
}
const { main } = await import('./program.ts')
await main()
