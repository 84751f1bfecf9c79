/**
 * Marks a node keeps on peers it found silent (silent-relays.ts,
 * gone-peers.ts): a connection to the peer shows it is there again and may
 * lift its mark, and the node's stop forgets them all. A service: libp2p
 * hands it its events (withEvents), and starts and stops it.
 */

import type { Connection, Libp2pEvents, Startable, TypedEventTarget } from '@libp2p/interface'

export abstract class PeerMarks implements Startable {
  private events?: TypedEventTarget<Libp2pEvents>

  /** `connection` to `peer` opened: its mark may go. */
  protected abstract lift (peer: string, connection: Connection): void
  /** The node stops: every mark goes. */
  protected abstract clear (): void

  /** Called by libp2p with its components, as a service. */
  withEvents (events: TypedEventTarget<Libp2pEvents>): this {
    this.events = events
    return this
  }

  start (): void {
    this.events?.addEventListener('connection:open', this.onOpen)
  }

  stop (): void {
    this.events?.removeEventListener('connection:open', this.onOpen)
    this.clear()
  }

  private readonly onOpen = (evt: CustomEvent<Connection>): void => {
    this.lift(evt.detail.remotePeer.toString(), evt.detail)
  }
}
