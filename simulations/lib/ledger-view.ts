/**
 * What one node's ledger says of every node in the simulation, read from
 * its ledger.db after the node stopped (as `spareband balance` would read
 * it offline): per peer earned, unpaid, spent, allowance and bytes.
 */

import { join } from 'node:path'
import { Ledger } from '../../src/accounting/ledger.ts'
import { LEDGER_FILE, ledgerSettings } from '../../src/node/accounting-report.ts'
import type { SimNetwork, SimNode } from './network.ts'
import type { Balance } from '../../src/accounting/ledger.ts'

/** A node's Balance as one ledger holds it, under the node's simulation name. */
export interface PeerPosition extends Balance {
  name: string
}

export interface LedgerView {
  /** Whose ledger this is. */
  holder: string
  /** Receipts stored (own and gossiped). */
  receipts: number
  peers: PeerPosition[]
}

/** Opens `holder`'s ledger read-only and reads every simulation node's position from it. */
export async function readLedgerView (net: SimNetwork, holder: SimNode): Promise<LedgerView> {
  const ledger = Ledger.open(join(holder.dataDir, LEDGER_FILE), {
    selfPeerId: holder.node.peerId,
    ...ledgerSettings(holder.node.config.accounting),
    readOnly: true
  })
  try {
    return {
      holder: holder.name,
      receipts: ledger.size,
      peers: net.nodes.map(n => ({ name: n.name, ...ledger.balance(n.node.peerId) }))
    }
  } finally {
    await ledger.close()
  }
}
