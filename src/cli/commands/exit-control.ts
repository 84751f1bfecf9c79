import { callApi } from '../api-client.ts'
import { printJson } from '../output.ts'
import type { Command } from 'commander'

/** What else keeps a resumed exit from taking tunnels, so `resume` does not promise traffic that will not come. */
function stillBlocked (exit: any): string[] {
  const why: string[] = []
  if (exit.quotaExceeded != null) why.push(`its ${String(exit.quotaExceeded)} data quota is used up`)
  if (exit.withinSchedule === false) why.push('it is outside its sharing schedule')
  return why
}

/**
 * `spareband pause` and `resume`: the control API's POST /v1/exit/pause and
 * /v1/exit/resume, so the operator needs neither curl nor the token.
 */
export function registerExitControl (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('pause')
    .description('stop the running node\'s exit taking new tunnels (open ones go on), across restarts, until spareband resume')
    .option('--json', 'print the exit\'s status as JSON')
    .action(async (opts, cmd: Command) => {
      const exit = await callApi(dataDirOf(cmd), '/v1/exit/pause', { method: 'POST', body: {} })
      if (opts.json === true) return printJson(exit)
      // a state file that could not be written: paused all the same, until the node stops
      const until = exit.stateNotSaved == null ? ', across restarts, until "spareband resume"' : ` until "spareband resume", but only until the node stops: ${String(exit.stateNotSaved)}`
      process.stdout.write(`exit paused since ${String(exit.pausedSince)}: it takes no new tunnels${until}; the ${Number(exit.tunnelsOpen)} tunnel(s) open now carry on\n`)
    })

  program.command('resume')
    .description('let the running node\'s exit take new tunnels again after spareband pause')
    .option('--json', 'print the exit\'s status as JSON')
    .action(async (opts, cmd: Command) => {
      const exit = await callApi(dataDirOf(cmd), '/v1/exit/resume', { method: 'POST', body: {} })
      if (opts.json === true) printJson(exit)
      else {
        const why = stillBlocked(exit)
        process.stdout.write(why.length === 0 ? 'exit resumed: it takes new tunnels\n' : `exit resumed, but it takes no new tunnels yet: ${why.join(', and ')}\n`)
        if (exit.stateNotSaved != null) process.stdout.write(`only until the node stops (a restart goes back to the state last saved): ${String(exit.stateNotSaved)}\n`)
      }
    })
}
