#!/usr/bin/env node
/**
 * The `spareband` command's entry point. It first makes sure node runs with
 * the node runtime flags (src/node/runtime-flags.ts), replacing this process
 * with one that has them where node can (same process id, so signals and
 * supervisors see no difference), and only then loads the command line: a
 * dynamic import, so a relaunch does not load it twice.
 */

import { relaunchWithRuntimeFlags } from '../node/runtime-flags.ts'

relaunchWithRuntimeFlags()
const { main } = await import('./program.ts')
await main()
