/**
 * Time units, protocol ids and other values shared by every area.
 */

export const second = 1000
export const minute = 60 * second
export const hour = 60 * minute
export const day = 24 * hour

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

/** The private DHT: only peers speaking this protocol join our routing table. */
export const DHT_PROTOCOL = '/spareband/kad/1.0.0'

/** One stream per proxied TCP connection. */
export const TUNNEL_PROTOCOL = '/spareband/tunnel/1.0.0'

/** A control stream per session carrying signed cumulative receipts. */
export const RECEIPT_PROTOCOL = '/spareband/receipt/1.0.0'

export const RECEIPTS_TOPIC = 'spareband/receipts/1'
export const REPUTATION_TOPIC = 'spareband/reputation/1'

/** How long the address of a relay found gone is not dialled (node/gone-peers.ts); failures of the dials refused meanwhile say so. */
export const GONE_PEER_PAUSE_MS = 20 * second

/** Written into identify's agent version so peers can tell spareband nodes apart. */
export const AGENT_NAME = 'spareband'
export const VERSION = '0.1.0'
