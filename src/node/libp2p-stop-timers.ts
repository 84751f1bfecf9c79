/**
 * libp2p 3's stop leaves timers armed that keep the process up after it: a
 * process that stopped its node (an app that embeds one for a task, a
 * script, a test) stayed up to 2 s for them, each doing nothing useful.
 *
 * - Closing its listeners makes the address manager schedule a peer-store
 *   write of the node's addresses (debounced, 1 s), and that write makes
 *   identify push schedule a push (1 s more) that finds the service stopped.
 * - gossipsub's stop() replaces its status without clearing the heartbeat
 *   timer in it (up to its 1 s interval).
 *
 * The debounced calls are @libp2p/utils debounce() wrappers, whose stop()
 * clears the timer, reached here through the components and the service,
 * their only handles. Anything missing (another version of a library) is
 * skipped: the process then only lingers as before.
 */

import type { Libp2p } from '@libp2p/interface'

interface Debounced { stop?: () => void }
interface HeartbeatHolder { status?: { heartbeatTimeout?: ReturnType<typeof setTimeout> }, stop?: () => Promise<void> }

/** Makes `node.stop()` leave no timer behind. */
export function stopWithoutLeftoverTimers (node: Libp2p<any>): void {
  const pubsub = (node.services as Record<string, HeartbeatHolder | undefined>).pubsub
  const pubsubStop = pubsub?.stop
  if (pubsub != null && pubsubStop != null) {
    // cleared in the same turn as stop() marks it stopped: a heartbeat running meanwhile schedules no next one
    pubsub.stop = async () => {
      clearTimeout(pubsub.status?.heartbeatTimeout)
      await pubsubStop.call(pubsub)
    }
  }
  const stop = node.stop.bind(node)
  node.stop = async () => {
    await stop()
    const addressManager = (node as unknown as { components?: { addressManager?: { _updatePeerStoreAddresses?: Debounced } } }).components?.addressManager
    addressManager?._updatePeerStoreAddresses?.stop?.()
    const identifyPush = (node.services as Record<string, { _push?: Debounced } | undefined>).identifyPush
    identifyPush?._push?.stop?.()
  }
}
