import { callApi } from '../api-client.ts'
import { formatKeyValues, formatTable, printJson } from '../output.ts'
import type { PeerInfoSummary } from '../../node/spareband-node.ts'
import type { Command } from 'commander'

/** The dashboard's address, after the API's; without the token, which `spareband dashboard` adds. */
function withDashboard (status: Record<string, unknown>): Record<string, unknown> {
  if (typeof status.api !== 'string') return status
  const dashboard = `${status.api}/ (spareband dashboard opens it)`
  return Object.fromEntries(Object.entries(status).flatMap(([k, v]) => k === 'api' ? [[k, v], ['dashboard', dashboard]] : [[k, v]]))
}

/** The DIRECTION column: "both" for a peer with a connection each way (one behind NAT that dialled us as we dialled it through its relay). */
export function directionLabel (p: { direction: string, directions?: string[], limited: boolean }): string {
  const direction = new Set(p.directions ?? [p.direction]).size > 1 ? 'both' : p.direction
  return direction + (p.limited ? ' (relayed)' : '')
}

export function registerStatus (program: Command, dataDirOf: (cmd: Command) => string): void {
  program.command('status')
    .description('show the running node\'s status')
    .option('--json', 'print JSON')
    .action(async (opts, cmd: Command) => {
      const status = await callApi(dataDirOf(cmd), '/v1/status')
      if (opts.json === true) printJson(status)
      else process.stdout.write(formatKeyValues(withDashboard(status)))
    })

  program.command('peers')
    .description('list the peers the running node is connected to')
    .option('--json', 'print JSON')
    .action(async (opts, cmd: Command) => {
      const peers = await callApi<PeerInfoSummary[]>(dataDirOf(cmd), '/v1/peers')
      if (opts.json === true) printJson(peers)
      else {
        process.stdout.write(formatTable(['PEER', 'DIRECTION', 'RTT ms', 'AGENT', 'ADDRESS'],
          peers.map(p => [p.peerId, directionLabel(p), p.latencyMs, p.agent, p.addresses.join(' ')])))
        process.stdout.write(`${peers.length} peer(s)\n`)
      }
    })
}
