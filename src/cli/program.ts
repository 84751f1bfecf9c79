/**
 * The `spareband` command line: a thin layer over the library. Errors print
 * one clear line; bad flags and bad config exit 2, other failures 1. The
 * entry point is index.ts.
 */

import { Command, CommanderError } from 'commander'
import { resolve } from 'node:path'
import { defaultDataDir } from '../node/config.ts'
import { checkDataDir } from '../node/data-dir.ts'
import { ConfigError, IdentityExistsError, IdentityMissingError, NodeNotRunningError } from '../errors.ts'
import { VERSION } from '../constants.ts'
import { EXIT_FAILURE, EXIT_USAGE, UsageError } from './errors.ts'
import { exitQuietlyWhenOutputCloses } from './output.ts'
import { registerInit } from './commands/init.ts'
import { registerStart } from './commands/start.ts'
import { registerStatus } from './commands/status.ts'
import { registerTestnet } from './commands/testnet.ts'
import { registerProviders } from './commands/providers.ts'
import { registerAccounting } from './commands/accounting.ts'
import { registerProbe } from './commands/probe.ts'
import { registerDashboard } from './commands/dashboard.ts'
import { registerExitControl } from './commands/exit-control.ts'

const HELP_HINT = '(run with --help for usage)'

/**
 * Commander's own errors in the form of every other error here: one line
 * after "spareband: ". A flag value that does not parse names the flag,
 * the value and what is allowed, without the help hint (the flag is
 * right, its value is not): `spareband: flag --api-port: "99999" is not a
 * port (0-65535; 0 picks a free one)`. An unknown option, a missing
 * argument and the like keep the hint.
 */
function commanderOutput (): { outputError: (str: string, write: (s: string) => void) => void, writeErr: (str: string) => void } {
  let valueError = false
  return {
    outputError (str, write) {
      const m = /^error: option '(-[^' ]+)[^']*' argument '[\s\S]*' is invalid\. ([\s\S]*?)\.?\n?$/.exec(str)
      // write goes through writeErr below: the line first, then the note that the hint is not wanted
      write(m != null ? `spareband: flag ${m[1]}: ${m[2]}\n` : str.replace(/^error: /, 'spareband: '))
      valueError = m != null
    },
    writeErr (str) {
      const hint = valueError && str === `${HELP_HINT}\n`
      valueError = false
      if (!hint) process.stderr.write(str)
    }
  }
}

export function buildProgram (): Command {
  const output = commanderOutput()
  const program = new Command('spareband')
    .description('spareband: share spare bandwidth, route traffic out of other regions')
    .version(VERSION)
    .option('--data-dir <dir>', 'data directory (default: $SPAREBAND_DATA_DIR or ~/.spareband)')
    .showHelpAfterError(HELP_HINT)
    .configureOutput(output)
    .exitOverride()
  const dataDirOf = (cmd: Command): string => {
    const opts = cmd.optsWithGlobals()
    // resolve('') is the working directory: the key and ledger would land wherever the command ran
    if (opts.dataDir === '') throw new UsageError('--data-dir is empty: name a directory, or leave the flag out for $SPAREBAND_DATA_DIR or ~/.spareband')
    const dataDir = resolve(opts.dataDir ?? defaultDataDir())
    // before any command reads or makes anything in it: a file there is the operator's to fix, not an EEXIST or ENOTDIR from deep inside
    checkDataDir(dataDir, opts.dataDir != null ? '--data-dir' : (process.env.SPAREBAND_DATA_DIR ?? '') !== '' ? 'SPAREBAND_DATA_DIR' : 'the default data directory')
    return dataDir
  }
  registerInit(program, dataDirOf)
  registerStart(program, dataDirOf)
  registerStatus(program, dataDirOf)
  registerProviders(program, dataDirOf)
  registerExitControl(program, dataDirOf)
  registerAccounting(program, dataDirOf)
  registerProbe(program, dataDirOf)
  registerDashboard(program, dataDirOf)
  registerTestnet(program)
  // subcommands inherit the global --data-dir and the exit override
  for (const c of program.commands) {
    // testnet puts its nodes under --dir; verify reads only the file it is given
    if (c.name() !== 'testnet' && c.name() !== 'verify') c.option('--data-dir <dir>', 'data directory (default: $SPAREBAND_DATA_DIR or ~/.spareband)')
    c.exitOverride()
    c.showHelpAfterError(HELP_HINT)
    c.configureOutput(output)
  }
  return program
}

export async function main (argv: string[] = process.argv): Promise<void> {
  exitQuietlyWhenOutputCloses()
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
  } catch (err: any) {
    process.exitCode = exitCodeFor(err)
    if (!(err instanceof CommanderError)) process.stderr.write(`spareband: ${err.message ?? String(err)}\n`)
    process.exit(process.exitCode)
  }
}

function exitCodeFor (err: unknown): number {
  if (err instanceof CommanderError) {
    // --help and --version exit 0; everything else commander rejects is usage
    return err.exitCode === 0 ? 0 : EXIT_USAGE
  }
  if (err instanceof ConfigError || err instanceof UsageError || err instanceof IdentityExistsError) return EXIT_USAGE
  if (err instanceof IdentityMissingError || err instanceof NodeNotRunningError) return EXIT_FAILURE
  return EXIT_FAILURE
}

