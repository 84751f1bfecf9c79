/**
 * A network of real spareband nodes in this process, on loopback TCP:
 * exits in regions, consumers, and an observer that takes no part and only
 * listens to gossip (the rest of the network's view of who paid whom).
 * Every node is what `createSparebandNode()` makes for an app; only the
 * proof of work is light and private targets (the origin) are allowed.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createSparebandNode } from '../../src/index.ts'
import type { SparebandNode, SparebandConfigInput } from '../../src/index.ts'

/** Light enough to start dozens of nodes in seconds; the ledgers of all nodes check the same difficulty. */
export const SIM_POW_DIFFICULTY = 8

export interface NetworkSpec {
  regions: string[]
  exitsPerRegion: number
  consumers: number
  /** Added to every exit's `[exit]` section (price, caps). */
  exit?: Record<string, unknown>
  /** Added to every node's `[accounting]` section. */
  accounting?: Record<string, unknown>
  /** Added to each consumer's `[accounting]` section, after `accounting`. */
  consumerAccounting?: Record<string, unknown>
}

export interface SimNode {
  /** `exit-de-0`, `consumer-1`, `observer`: names the report uses. */
  name: string
  role: 'exit' | 'consumer' | 'observer'
  region?: string
  node: SparebandNode
  dataDir: string
  /** Whether the scenario stopped it (churn) before the end. */
  stopped: boolean
}

export class SimNetwork {
  readonly nodes: SimNode[] = []

  private constructor (readonly spec: NetworkSpec, readonly originPort: number) {}

  get exits (): SimNode[] { return this.nodes.filter(n => n.role === 'exit') }
  get consumers (): SimNode[] { return this.nodes.filter(n => n.role === 'consumer') }
  get observer (): SimNode { return this.nodes.find(n => n.role === 'observer')! }

  byPeerId (peerId: string): SimNode | undefined {
    return this.nodes.find(n => n.node.peerId.toString() === peerId)
  }

  /**
   * Starts the observer first (everyone bootstraps from it, so it is in
   * everyone's gossip mesh), then the exits, then the consumers; resolves
   * once every exit has published its capacity ad and every consumer has
   * solved its proof of work. Nodes started before a failure are stopped.
   */
  static async start (spec: NetworkSpec, originPort: number, log: (line: string) => void = () => {}): Promise<SimNetwork> {
    const net = new SimNetwork(spec, originPort)
    try {
      const observer = await net.add('observer', 'observer', undefined, { exit: { enabled: false } })
      const bootstrap = observer.node.status().addresses.slice(0, 1)
      for (const region of spec.regions) {
        for (let i = 0; i < spec.exitsPerRegion; i++) {
          await net.add(`exit-${region}-${i}`, 'exit', region, {
            region,
            network: { bootstrap },
            exit: { allow_private_targets: true, allowed_ports: [originPort], ...spec.exit }
          })
        }
      }
      for (let i = 0; i < spec.consumers; i++) {
        await net.add(`consumer-${i}`, 'consumer', undefined, { network: { bootstrap }, exit: { enabled: false }, accounting: spec.consumerAccounting })
      }
      log(`${net.nodes.length} nodes started`)
      await until(() => net.exits.every(e => e.node.status().routing?.advertising.published === true), 60_000, 'every exit\'s capacity ad')
      await until(() => net.consumers.every(c => c.node.status().accounting?.proofOfWork.solved === true), 60_000, 'every consumer\'s proof of work')
      log('every exit advertised, every consumer solved its proof of work')
      return net
    } catch (err) {
      await net.stop()
      throw err
    }
  }

  private async add (name: string, role: SimNode['role'], region: string | undefined, config: Record<string, any>): Promise<SimNode> {
    const dataDir = await mkdtemp(join(tmpdir(), `sb-sim-${name}-`))
    const entry: SimNode = { name, role, region, node: undefined as unknown as SparebandNode, dataDir, stopped: false }
    try {
      entry.node = await createSparebandNode({
        dataDir,
        controlApi: false,
        config: {
          listen: ['/ip4/127.0.0.1/tcp/0'],
          proxy: { socks_port: 0, http_port: 0 },
          ...config,
          accounting: { pow_difficulty: SIM_POW_DIFFICULTY, ...this.spec.accounting, ...config.accounting },
          network: { local_testnet: true, ...config.network }
        } as SparebandConfigInput
      })
      await entry.node.start()
    } catch (err) {
      await rm(dataDir, { recursive: true, force: true })
      throw err
    }
    this.nodes.push(entry)
    return entry
  }

  /** Stops one node now (churn): its tunnels break, its sessions end. */
  async stopNode (n: SimNode): Promise<void> {
    n.stopped = true
    await n.node.stop()
  }

  /** Stops every node still running (consumers first, so their last receipts are signed and published) and deletes nothing. */
  async stop (): Promise<void> {
    const order = [...this.consumers, ...this.exits, ...this.nodes.filter(n => n.role === 'observer')]
    // stop() is idempotent and waits for a stop under way (a churned node's), so every node is down after this
    for (const n of order) await n.node.stop().catch(() => {})
  }

  /** Deletes every data directory (after stop()). */
  async remove (): Promise<void> {
    await Promise.allSettled(this.nodes.map(async n => rm(n.dataDir, { recursive: true, force: true })))
  }
}

/** Polls `ready` every 100 ms; throws naming `what` after `timeoutMs`. */
export async function until (ready: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`simulation: timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}
