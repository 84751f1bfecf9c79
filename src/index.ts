/**
 * @packageDocumentation
 *
 * spareband: a decentralized bandwidth-sharing network on js-libp2p. Embed a
 * node in your own app:
 *
 * @example
 * ```ts
 * import { createSparebandNode } from 'spareband'
 *
 * const node = await createSparebandNode({ dataDir: './sb', config: { region: 'de' } })
 * node.addEventListener('peer:connect', e => console.log('connected to', e.detail.peerId))
 * await node.start()
 * console.log(node.status())
 * await node.stop()
 * ```
 */

import { SparebandNode } from './node/spareband-node.ts'
import type { SparebandNodeInit } from './node/spareband-node.ts'

export async function createSparebandNode (init: SparebandNodeInit = {}): Promise<SparebandNode> {
  return SparebandNode.create(init)
}

export { SparebandNode }
export type { SparebandNodeInit, NodeStatus, PeerInfoSummary, SparebandEvents } from './node/spareband-node.ts'
export type { ExitStatus, ExitOffer, DisabledExitStatus, ProxyStatus } from './node/relay-parts.ts'
export type { RoutingStatus } from './node/routing-part.ts'
export type { AccountingStatus } from './node/accounting-part.ts'
export type { BalanceReport, PendingBytes, ReceiptRow } from './node/accounting-report.ts'
export type { ProviderRow } from './routing/routing-selector.ts'
export type { ExitStats, ExitClosedReason, OfferChange } from './relay/exit.ts'
export type { IngressStats } from './relay/ingress.ts'
export type { AdvertiserStatus } from './routing/advertiser.ts'
export { defaultConfig, resolveConfig } from './node/config.ts'
export type { ConfigLayer, DeepReadonly, SparebandConfig, SparebandConfigInput } from './node/config.ts'
export type { AppConnectOptions, TunnelSocket } from './relay/app-connect.ts'
export type { FoundRelay, KeeperBack, KeeperLost, RelayState } from './node/peer-keeper.ts'
export type { PeerRefusalNotice } from './node/refusal-notices.ts'
export type { RelayServiceStatus } from './node/relay-service-part.ts'
export type { RelaySearchStatus } from './node/relay-search.ts'
export type { ProxyFailureNotice, ProxyRefusalNotice } from './relay/ingress.ts'
export { createIdentity, loadIdentity } from './node/identity.ts'
export { NODE_RUNTIME_FLAGS } from './node/runtime-flags.ts'
export * from './errors.ts'
export * from './constants.ts'
export { LedgerError, LedgerErrorCode } from './accounting/errors.ts'
