import { existsSync } from 'node:fs'
import { Option } from 'commander'
import { NoticeLimiter } from '../../notice-limiter.ts'
import { defaultConfig } from '../../node/config.ts'
import { collect, parseNumberArg, parsePortArg, resolveCliConfig } from '../config-from-flags.ts'
import { onGracefulShutdown } from '../graceful-shutdown.ts'
import { log, surviveClosedOutput } from '../output.ts'
import { formatHostPort } from '../../errors.ts'
import { watchWarnings } from '../warning-log.ts'
import type { Command } from 'commander'
import type { SparebandNode } from '../../node/spareband-node.ts'

/** The note on a rate-limited log line of how many like it were left out since the last one shown. */
function notShown (held: number, what?: string): string | undefined {
  return held > 0 ? `${held} more ${what != null ? `${what} ` : ''}since the last one shown` : undefined
}

/** Never resolves: the node runs until a signal's handler (onGracefulShutdown) exits the process. */
async function untilExit (): Promise<never> {
  return new Promise<never>(() => {})
}

/** 'peer connected' and 'peer disconnected' lines a minute, each: a busy node's churn shows, a loop of connects does not fill the disk. */
const PEER_LINES_PER_MINUTE = 30

export function registerStart (program: Command, dataDirOf: (cmd: Command) => string): void {
  const exit = defaultConfig.exit
  program.command('start')
    .description('run a node until SIGINT, SIGTERM or SIGHUP')
    .option('--config <file>', 'config file (default: <data-dir>/config.toml)')
    .option('--region <region>', 'region this node exits traffic in, e.g. de or us-ca')
    .option('--listen <multiaddr>', 'listen address, repeatable', collect)
    .option('--announce <multiaddr>', 'address to announce instead of the listen addresses, repeatable', collect)
    .option('--bootstrap <multiaddr>', 'peer to join the network through, repeatable', collect)
    .option('--network <name|file>', 'network definition: a name from networks/ or a JSON file')
    .addOption(new Option('--socks-port <port>', 'SOCKS5 proxy port on 127.0.0.1 (0 = any free port)').argParser(parsePortArg).default(defaultConfig.proxy.socks_port))
    .addOption(new Option('--http-port <port>', 'HTTP proxy port on 127.0.0.1 (0 = any free port)').argParser(parsePortArg).default(defaultConfig.proxy.http_port))
    .addOption(new Option('--api-port <port>', 'control API port on 127.0.0.1 (0 = any free port)').argParser(parsePortArg).default(defaultConfig.api.port))
    .option('--proxy-host <address>', 'address the proxies bind to; anything beyond loopback needs credentials in config')
    .option('--default-region <region>', 'region for proxy requests whose user name names none')
    .option('--no-supply', 'do not act as an exit for other members')
    .option('--no-relay', 'do not act as a circuit relay for other peers')
    .addOption(new Option('--capacity-mbps <n>', 'capacity to advertise, Mbit/s').argParser(parseNumberArg).default(defaultConfig.exit.capacity_mbps))
    .addOption(new Option('--exit-ports <list>', 'ports the exit allows, e.g. 80,443,8000-8100 or reduced').default(defaultConfig.exit.allowed_ports.join(',')))
    .option('--schedule <spec>', 'when to share, e.g. "mon-fri 00:00-07:00, sat-sun all"')
    .addOption(new Option('--upload-mbps <n>', 'exit: cap on consumers\' uploads, all tunnels together, Mbit/s, 0 = no cap').argParser(parseNumberArg).default(exit.upload_mbps))
    .addOption(new Option('--download-mbps <n>', 'exit: cap on consumers\' downloads, all tunnels together, Mbit/s, 0 = no cap').argParser(parseNumberArg).default(exit.download_mbps))
    .addOption(new Option('--per-consumer-mbps <n>', 'exit: cap per consumer, each direction, Mbit/s, 0 = no cap').argParser(parseNumberArg).default(exit.per_consumer_mbps))
    .addOption(new Option('--max-tunnels <n>', 'exit: tunnels at once (open or being set up), all consumers together').argParser(parseNumberArg).default(exit.max_tunnels))
    .addOption(new Option('--max-tunnels-per-consumer <n>', 'exit: tunnels at once (open or being set up) per consumer').argParser(parseNumberArg).default(exit.max_tunnels_per_consumer))
    .addOption(new Option('--daily-quota-gb <n>', 'exit: data per local day, both directions, GB, 0 = none').argParser(parseNumberArg).default(exit.daily_quota_gb))
    .addOption(new Option('--monthly-quota-gb <n>', 'exit: data per local month, both directions, GB, 0 = none').argParser(parseNumberArg).default(exit.monthly_quota_gb))
    .addOption(new Option('--idle-timeout <seconds>', 'exit: close tunnels idle this long').argParser(parseNumberArg).default(exit.idle_timeout_seconds))
    .addOption(new Option('--gossip-retention-days <days>', 'keep third parties\' receipts this many days after their last one, 0 = for ever').argParser(parseNumberArg).default(defaultConfig.accounting.gossip_retention_days))
    .option('--allow-private-targets', 'let the exit reach private and loopback addresses: LOCAL TESTNETS ONLY')
    .action(async (_opts, cmd: Command) => {
      const dataDir = dataDirOf(cmd)
      const { config, configFile } = resolveCliConfig(cmd, dataDir)
      surviveClosedOutput()
      let stopWatching: (() => void) | undefined
      let stopping = false
      // set up before the node is made, which takes a while: a signal meanwhile stops it once it is
      // (it holds the data directory's lock by then), and one after start() stops it at once
      let made: Promise<SparebandNode | undefined> | undefined
      onGracefulShutdown(async () => {
        stopping = true
        stopWatching?.()
        // a node that could not be made (its data directory in use, say) fails the stop too: exit 1, not 0
        await (await made)?.stop()
      })
      // loaded here so that quick commands (status, peers, --help) do not pay for libp2p
      made = import('../../node/spareband-node.ts').then(async ({ SparebandNode }) => stopping ? undefined : SparebandNode.create({ dataDir, resolvedConfig: config, configFile, createIdentity: false }))
      const node = await made
      // stopped before it was made: the handler exits
      if (node == null) return await untilExit()
      // started by a supervisor (testnet, tests) over IPC: stop when it goes away, even if it was killed
      if (process.send != null) process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'))
      // an exit without its relay is unreachable, a node without peers out of the network: say so, once, and when it is over.
      // Before start: a named relay down at start is tried, and reported lost, within node.start()
      node.addEventListener('keeper:lost', e => {
        const { kind, target, reason } = e.detail
        if (kind === 'relay') log('warn', 'relay lost, redialling it', { relay: target, reason })
        else log('warn', 'no peer and no bootstrap peer answers, redialling them', { bootstrap: target })
      })
      node.addEventListener('keeper:back', e => {
        const { kind, target, downMs, attempts } = e.detail
        log('info', kind === 'relay' ? 'relay back' : 'connected to the network again', { [kind]: target, downSeconds: Math.round(downMs / 1000), redials: attempts })
      })
      // before start too: the bootstrap peer and a named relay connect while the node starts.
      // At most PEER_LINES_PER_MINUTE of each: a peer that connects and leaves in a loop wrote 65 KB/s
      const connects = new NoticeLimiter(PEER_LINES_PER_MINUTE)
      const disconnects = new NoticeLimiter(PEER_LINES_PER_MINUTE)
      const peerLine = (limiter: NoticeLimiter, what: string, peer: string): void => {
        const held = limiter.take()
        if (held != null) log('info', what, { peer, notShown: notShown(held) })
      }
      node.addEventListener('peer:connect', e => { peerLine(connects, 'peer connected', e.detail.peerId) })
      node.addEventListener('peer:disconnect', e => { peerLine(disconnects, 'peer disconnected', e.detail.peerId) })
      try {
        await node.start()
      } catch (err) {
        // gives the data directory back (node.lock) before the error ends the process
        await node.stop().catch(() => {})
        if (stopping) return await untilExit()
        throw err
      }
      // a signal came while it started: the handler is stopping it, and exits
      if (stopping) return await untilExit()
      const status = node.status()
      // where clients go: with port 0, or ports from a config file, the log is where the operator looks
      const proxy = status.proxy as { socksPort: number, httpPort: number } | undefined
      log('info', 'spareband node started', {
        peerId: status.peerId,
        network: status.network,
        region: status.region,
        dht: status.dht.mode,
        relay: status.relayService == null ? 'off' : status.relayService.running ? 'on' : `off (${status.relayService.reason})`,
        api: status.api,
        socks: proxy != null ? formatHostPort(config.proxy.host, proxy.socksPort) : undefined,
        http: proxy != null ? formatHostPort(config.proxy.host, proxy.httpPort) : undefined,
        dataDir,
        // a testnet's nodes, and any node given no config file, run without one: the path alone read as if it were read
        config: existsSync(configFile) ? configFile : `none (no ${configFile})`
      })
      // where it listens; with announce set, peers are told other addresses, which may be none of these
      for (const a of node.listenAddresses()) log('info', 'listening', { address: a })
      if (config.announce.length > 0) for (const a of status.addresses) log('info', 'announced', { address: a })
      for (const w of status.warnings) log('warn', w)
      // and those that come, or go, later
      const warnings = watchWarnings(() => node.status().warnings, status.warnings, ({ appeared, cleared }) => {
        for (const w of appeared) log('warn', w)
        for (const name of cleared) log('info', 'warning over', { was: name.length > 120 ? `${name.slice(0, 120)}...` : name })
      })
      // the DHT's mode follows the node's public address (network.dht_server "auto"): a node at a public
      // address becomes a server a moment after the start line, once its address is confirmed
      const dht = node.libp2p.services.dht as { getMode?: () => string } | undefined
      let dhtMode: string = status.dht.mode
      const dhtWatch = setInterval(() => {
        const mode = dht?.getMode?.()
        if (mode == null || mode === dhtMode) return
        dhtMode = mode
        log('info', mode === 'server' ? 'DHT server: this node has a public address, and answers DHT queries' : 'DHT client: this node has no public address now, and asks DHT servers only')
      }, 2000)
      dhtWatch.unref()
      stopWatching = () => { warnings.stop(); clearInterval(dhtWatch) }
      // a quota used up ends downloads mid-way: the reason goes in the log then, not at the next reading
      node.addEventListener('exit:availability', warnings.check)
      // a relay that stops cuts the circuits through it: the operator hears of it, and why
      node.addEventListener('relay:service', e => {
        if (e.detail.running) log('info', 'relay service started: this node has a public address')
        else log('info', 'relay service stopped: this node has no public address now, so nobody could dial the circuits it relays')
      })
      // said at once: a pause and resume within the warnings' 10 s poll left no trace
      node.addEventListener('exit:pause', e => {
        if (e.detail.paused) log('info', 'exit paused: it takes no new tunnels (open ones go on) until spareband resume')
        else log('info', 'exit resumed')
      })
      // a client's bad user name is answered to the client; the operator should see it too
      node.addEventListener('proxy:refused', e => log('warn', 'proxy refused a client', {
        proxy: e.detail.proxy,
        kind: e.detail.kind,
        reason: e.detail.reason,
        notShown: notShown(e.detail.suppressed, 'refusals')
      }))
      // what exits answered this node's own tunnels: the client saw it, the operator should too;
      // an exit's refusal of this node (credit, quota, pause) is a warning, the target's answer is not
      node.addEventListener('proxy:failed', e => log(e.detail.fromTarget ? 'info' : 'warn', 'tunnel not carried', {
        status: e.detail.outcome,
        target: e.detail.target,
        exit: e.detail.exit,
        reason: e.detail.reason,
        notShown: notShown(e.detail.suppressed)
      }))
      // what the node refused peers: routine for tunnels (no credit, the quota), a sign of trouble for receipts and gossip
      const refused = { tunnel: 'exit refused a tunnel', receipt: 'exit refused a receipt', gossip: 'rejected a gossiped message', framing: 'ended a peer\'s connection or stream' } as const
      const aboutKey = { tunnel: 'status', receipt: 'status', gossip: 'topic', framing: 'ended' } as const
      node.addEventListener('node:refused', e => log(e.detail.kind === 'tunnel' ? 'info' : 'warn', refused[e.detail.kind], {
        peer: e.detail.peer,
        [aboutKey[e.detail.kind]]: e.detail.about,
        reason: e.detail.reason,
        notShown: notShown(e.detail.suppressed)
      }))
      // keep running until a signal arrives
      await untilExit()
    })
}
