/**
 * Wires the routing area into a node: the DHT validator and selector for
 * capacity records (in libp2p.ts), the advertiser when this node is an exit
 * with a region, discovery and the learned exit selector for the proxies,
 * and `GET /v1/providers?region=R`.
 */

import { join } from 'node:path'
import { Advertiser } from '../routing/advertiser.ts'
import { ExitDiscovery } from '../routing/discovery.ts'
import { RoutingSelector } from '../routing/routing-selector.ts'
import { isValidRegion, normalizeRegion, subdivisionProblem } from '../routing/regions.ts'
import { KnownPeerSelector } from '../relay/exit-selector.ts'
import { formatPortList, parsePortList } from '../relay/ports.ts'
import { HttpError } from './control-api.ts'
import { advertisedCapacityMbps } from './relay-parts.ts'
import { AD_SEQ_FILE, adSeqFile } from './ad-seq-file.ts'
import type { NodePart, SparebandNode } from './spareband-node.ts'
import type { AccountingPart } from './accounting-part.ts'
import type { TunnelExit } from '../relay/exit.ts'
import type { AdvertiserDht, AdvertiserStatus } from '../routing/advertiser.ts'
import type { AdvertisedRelays } from '../routing/advertised-relays.ts'
import type { ExitDiscoveryComponents } from '../routing/discovery.ts'
import type { IncomingMessage } from 'node:http'
import type { IdentifyResult } from '@libp2p/interface'

/** `status().routing`: this exit's capacity ad in the DHT (published: false when it has none), and the exits this node knows of. */
export interface RoutingStatus {
  advertising: AdvertiserStatus | { published: false }
  knownExits: number
}

export interface RoutingPart extends NodePart {
  discovery: ExitDiscovery
  selector: RoutingSelector
  advertiser?: Advertiser
}

export function routingPart (node: SparebandNode): RoutingPart {
  const { libp2p, config } = node
  const dht = libp2p.services.dht as (AdvertiserDht & { routingTable?: ExitDiscoveryComponents['routingTable'] }) | undefined
  const advertisedRelays = libp2p.services.advertisedRelays as AdvertisedRelays | undefined
  const discovery = new ExitDiscovery({ libp2p, logger: libp2p.logger, routingTable: dht?.routingTable, advertisedRelays }, { localTestnet: config.network.local_testnet })
  // accounting is built after routing and may be off: looked up when used
  const accounting = (): AccountingPart | undefined => node.part<AccountingPart>('accounting')
  const selector = new RoutingSelector(libp2p, {
    discovery,
    known: new KnownPeerSelector(libp2p),
    reputation: {
      score: exit => accounting()?.book.score(exit.toMultihash().bytes),
      observe: (exit, ok, status) => { accounting()?.reputation.observe(exit.toString(), ok, status) }
    }
  })
  let advertiser: Advertiser | undefined
  const region = config.region
  if (config.exit.enabled && region != null) {
    const allowedPorts = formatPortList(parsePortList(config.exit.allowed_ports))
    advertiser = new Advertiser({ libp2p, dht: dht!, routingTable: dht?.routingTable, privateKey: node.identity.privateKey, logger: libp2p.logger }, {
      localTestnet: config.network.local_testnet,
      seqStore: adSeqFile(join(node.dataDir, AD_SEQ_FILE)),
      offer: () => {
        const exit = libp2p.services.exit as TunnelExit | undefined
        if (exit == null) return undefined
        const s = exit.status()
        // an exit that would refuse new tunnels now says it is full
        const refusing = s.paused || !s.withinSchedule || s.quotaExceeded != null
        return {
          region,
          capacityMbps: advertisedCapacityMbps(config.exit),
          // tunnels being set up count against max_tunnels as open ones do
          load: refusing ? 1 : Math.min(1, (s.tunnelsOpen + s.tunnelsConnecting) / Math.max(1, config.exit.max_tunnels)),
          pricePerGbMicro: BigInt(Math.round(config.exit.price_per_gb * 1e6)),
          allowedPorts
        }
      }
    })
  }
  const onOfferChange = (): void => { advertiser?.offerChanged() }
  // what an exit says of its own addresses is newer than its ad: a relay it reserved on since counts
  const onIdentify = (evt: CustomEvent<IdentifyResult>): void => { void discovery.identified(evt.detail.peerId, evt.detail.listenAddrs).catch(() => {}) }
  return {
    name: 'routing',
    discovery,
    selector,
    advertiser,
    start: async () => {
      discovery.start()
      libp2p.addEventListener('peer:identify', onIdentify)
      // a paused exit says so at once (load 1), not at the next check (30 s) while consumers still pick it
      const exit = libp2p.services.exit as TunnelExit | undefined
      if (advertiser != null) exit?.addEventListener('exit:offer:change', onOfferChange)
      await advertiser?.start()
    },
    stop: async () => {
      libp2p.removeEventListener('peer:identify', onIdentify)
      ;(libp2p.services.exit as TunnelExit | undefined)?.removeEventListener('exit:offer:change', onOfferChange)
      discovery.stop()
      await advertiser?.stop()
    },
    status: (): RoutingStatus => ({ advertising: advertiser?.status() ?? { published: false }, knownExits: discovery.cached().length }),
    // init without --region writes no region, and nothing else said that such an exit is found by no region lookup
    warnings: () => config.exit.enabled && region == null
      ? ['the exit has no region, so it is not advertised in the DHT and consumers asking for a region never pick it: set region (region = "de" in config.toml, --region de or SPAREBAND_REGION), or turn the exit off with --no-supply']
      : [],
    routes: {
      providers: {
        get: async (req: IncomingMessage) => {
          const r = new URL(req.url ?? '/', 'http://localhost').searchParams.get('region')
          if (r == null || r === '') throw new HttpError(400, 'give a region: /v1/providers?region=de')
          const wanted = normalizeRegion(r)
          if (!isValidRegion(wanted)) throw new HttpError(400, `"${r}" is not a region (${subdivisionProblem(wanted) ?? 'ISO 3166-1 alpha-2, optionally -subdivision'})`)
          return selector.providers(wanted)
        }
      }
    }
  }
}
