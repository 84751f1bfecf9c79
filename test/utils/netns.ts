/**
 * Network namespaces for multi-host e2e tests: a "public" network, a NAT
 * router and a "home" network behind it, each a namespace of its own made
 * (and removed) by the test, joined by veth pairs. Needs root, `ip` and
 * `iptables` (or `iptables-legacy`). With the default plan every address
 * is in 10.77.0.0/16 inside these namespaces (PUBLIC_PLAN puts the public
 * side at public addresses); nothing here reaches the machine's own
 * network.
 *
 *   public 10.77.1.0/24            router                home 10.77.2.0/24
 *   relay .2, consumer .3  <-->  .1 (pub) | .1 (home)  <-->  exit .2
 *                                MASQUERADE out of pub       default via .1
 *
 * The public side has no route into 10.77.2.0/24: nothing there can dial
 * the home network, as on the Internet; the home side reaches the public
 * one through the router, seen there as 10.77.1.1.
 */

import { execFile, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { NodeProcess, runCli, tempDir } from './cli.ts'
import { createIdentity } from '../../src/node/identity.ts'
import type { ChildProcess } from 'node:child_process'

export const PUBLIC_SUBNET = '10.77.1.0/24'
export const HOME_SUBNET = '10.77.2.0/24'
export const ROUTER_PUBLIC_IP = '10.77.1.1'
export const RELAY_IP = '10.77.1.2'
export const CONSUMER_IP = '10.77.1.3'
export const ROUTER_HOME_IP = '10.77.2.1'
export const EXIT_IP = '10.77.2.2'
/** IsolatedNamespace's own address. */
export const ISOLATED_IP = '10.77.9.1'

/** Where each host of the topology is; every subnet a /24. */
export interface AddressPlan {
  routerPublic: string
  /** Addresses on the public side's one link (the relay, the consumer, a web server...). */
  publicHosts: string[]
  routerHome: string
  exit: string
}

/** The plan above: a local testnet's, every address private. */
export const PRIVATE_PLAN: AddressPlan = { routerPublic: ROUTER_PUBLIC_IP, publicHosts: [RELAY_IP, CONSUMER_IP], routerHome: ROUTER_HOME_IP, exit: EXIT_IP }

/**
 * The public network's plan: the public side at addresses libp2p and the
 * exit policy take for public ones, as on the Internet, and the home
 * network behind the NAT private, as at home. 11.0.0.0/8 is allocated
 * (not reserved), but these addresses exist only inside the test's
 * namespaces, which have no link to any other network: nothing sent to
 * them leaves the namespaces.
 */
export const PUBLIC_PLAN: AddressPlan = { routerPublic: '11.77.1.1', publicHosts: ['11.77.1.2', '11.77.1.3', '11.77.1.4'], routerHome: '10.77.2.1', exit: '10.77.2.2' }

/** `ip netns exec NS`: a command prefix that runs the rest in namespace NS (ip execs it in place, so the pid is the command's). */
export function inNetns (ns: string): string[] {
  return ['ip', 'netns', 'exec', ns]
}

/**
 * Why namespaces cannot be used here, or undefined when they can: root,
 * iptables installed, a namespace can be made and removed and a MASQUERADE
 * rule added in it. Synchronous, for
 * describe.skipIf.
 */
export function netnsUnusable (): string | undefined {
  if (process.getuid?.() !== 0) return 'not root'
  const commands = iptablesCommands()
  if (commands.length === 0) return 'iptables is missing (apt-get install iptables)'
  const probe = `sb-probe-${randomBytes(3).toString('hex')}`
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' })
  } catch (err: any) {
    return `ip netns add failed: ${String(err.stderr ?? err.message).trim()}`
  }
  try {
    // an iptables without the nat table or MASQUERADE (an nft-only kernel without its compat modules) cannot build the NAT
    const masquerades = commands.some(cmd => {
      try {
        execFileSync('ip', ['netns', 'exec', probe, cmd, '-t', 'nat', '-A', 'POSTROUTING', '-o', 'lo', '-j', 'MASQUERADE'], { stdio: 'pipe' })
        return true
      } catch {
        return false
      }
    })
    if (!masquerades) return `no iptables (${commands.join(', ')}) can add a MASQUERADE rule in a namespace here`
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' })
    } catch {}
  }
  return undefined
}

function iptablesCommands (): string[] {
  return ['iptables', 'iptables-legacy'].filter(cmd => {
    try {
      execFileSync(cmd, ['--version'], { stdio: 'pipe' })
      return true
    } catch {
      return false
    }
  })
}

export interface ExecResult { code: number, stdout: Buffer, stderr: string }

/** Runs `file args` in namespace `ns`; never throws for a non-zero exit. */
export async function execIn (ns: string, file: string, args: string[], { timeoutMs = 30_000 } = {}): Promise<ExecResult> {
  return new Promise(resolve => {
    execFile('ip', ['netns', 'exec', ns, file, ...args], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err: any, stdout, stderr) => {
      resolve({ code: err == null ? 0 : (typeof err.code === 'number' ? err.code : -1), stdout, stderr: stderr.toString() })
    })
  })
}

async function run (file: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile(file, args, (err, _stdout, stderr) => {
      if (err != null) reject(new Error(`${file} ${args.join(' ')}: ${stderr.trim() || err.message}`))
      else resolve()
    })
  })
}

/**
 * The three namespaces and their links. Made by build(), removed by
 * teardown(), which also kills whatever still runs in them (only this
 * test's processes can: the names are unique) and can be called after a
 * build that failed half way.
 */
export class NatTopology {
  constructor (readonly plan: AddressPlan = PRIVATE_PLAN) {}
  readonly suffix = randomBytes(3).toString('hex')
  readonly pub = `sb-pub-${this.suffix}`
  readonly router = `sb-rt-${this.suffix}`
  readonly home = `sb-home-${this.suffix}`
  /** The iptables command that made the masquerade rule (`iptables`, or `iptables-legacy` where the nft one fails). */
  iptables = ''
  private readonly made: string[] = []

  async build (): Promise<void> {
    // interface names have at most 15 characters
    const routerPub = `sbrp${this.suffix}`
    const pubSide = `sbpr${this.suffix}`
    const routerHome = `sbrh${this.suffix}`
    const homeSide = `sbhr${this.suffix}`
    for (const ns of [this.pub, this.router, this.home]) {
      await run('ip', ['netns', 'add', ns])
      this.made.push(ns)
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    }
    // made straight into the namespaces: deleting a namespace deletes its ends
    await run('ip', ['link', 'add', routerPub, 'netns', this.router, 'type', 'veth', 'peer', 'name', pubSide, 'netns', this.pub])
    await run('ip', ['link', 'add', routerHome, 'netns', this.router, 'type', 'veth', 'peer', 'name', homeSide, 'netns', this.home])
    const addr = async (ns: string, dev: string, ...cidrs: string[]): Promise<void> => {
      for (const cidr of cidrs) await run('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', dev])
      await run('ip', ['-n', ns, 'link', 'set', dev, 'up'])
    }
    const plan = this.plan
    await addr(this.pub, pubSide, ...plan.publicHosts.map(ip => `${ip}/24`))
    await addr(this.router, routerPub, `${plan.routerPublic}/24`)
    await addr(this.router, routerHome, `${plan.routerHome}/24`)
    await addr(this.home, homeSide, `${plan.exit}/24`)
    await run('ip', ['-n', this.home, 'route', 'add', 'default', 'via', plan.routerHome])
    await run('ip', ['netns', 'exec', this.router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    const failures: string[] = []
    for (const cmd of iptablesCommands()) {
      try {
        await run('ip', ['netns', 'exec', this.router, cmd, '-t', 'nat', '-A', 'POSTROUTING', '-o', routerPub, '-j', 'MASQUERADE'])
        this.iptables = cmd
        break
      } catch (err: any) {
        failures.push(err.message)
      }
    }
    if (this.iptables === '') throw new Error(`no iptables could add the masquerade rule: ${failures.join('; ')}`)
  }

  /**
   * A host of its own on the public side: namespace `sb-h<n>-<suffix>` at
   * `ip`, on a /24 of its own linked to the public namespace, which routes
   * for it (the router reaches it through the public namespace's first
   * address). Its own namespace lets it go silent alone (silence()).
   */
  async addPublicHost (ip: string): Promise<string> {
    const n = this.made.length
    const ns = `sb-h${n}-${this.suffix}`
    await run('ip', ['netns', 'add', ns])
    this.made.push(ns)
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    const gateway = ip.replace(/\.\d+$/, '.1')
    const pubEnd = `sbx${n}p${this.suffix}`
    const hostEnd = `sbx${n}h${this.suffix}`
    await run('ip', ['link', 'add', pubEnd, 'netns', this.pub, 'type', 'veth', 'peer', 'name', hostEnd, 'netns', ns])
    await run('ip', ['-n', this.pub, 'addr', 'add', `${gateway}/24`, 'dev', pubEnd])
    await run('ip', ['-n', this.pub, 'link', 'set', pubEnd, 'up'])
    await run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', hostEnd])
    await run('ip', ['-n', ns, 'link', 'set', hostEnd, 'up'])
    await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', gateway])
    await run('ip', ['netns', 'exec', this.pub, 'sysctl', '-qw', 'net.ipv4.ip_forward=1'])
    await run('ip', ['-n', this.router, 'route', 'add', ip.replace(/\.\d+$/, '.0/24'), 'via', this.plan.publicHosts[0]])
    return ns
  }

  /** Every packet to and from namespace `ns` dropped, nothing closed: a host that died without a word, or a line cut. */
  async silence (ns: string): Promise<void> {
    for (const chain of ['INPUT', 'OUTPUT']) await run('ip', ['netns', 'exec', ns, this.iptables, '-I', chain, '-j', 'DROP'])
  }

  /** Kills what runs in the namespaces, then deletes them. Never throws. */
  async teardown (): Promise<void> {
    await removeNamespaces(this.made.splice(0))
  }
}

/** Kills what runs in each namespace, then deletes it. Never throws. */
async function removeNamespaces (names: string[]): Promise<void> {
  for (const ns of names) {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', ns], { stdio: 'pipe' }).toString().split(/\s+/).filter(Boolean)
      for (const pid of pids) {
        try { process.kill(Number(pid), 'SIGKILL') } catch {}
      }
    } catch {}
  }
  const left: string[] = []
  for (const ns of names) {
    try {
      await run('ip', ['netns', 'del', ns])
    } catch (err: any) {
      left.push(err.message)
    }
  }
  if (left.length > 0) console.warn(`netns teardown: ${left.join('; ')}`)
}

/**
 * A namespace linked to nothing: its loopback, and a veth pair whose two
 * ends are both inside it, one at `ISOLATED_IP` (WebRTC gathers no
 * candidate on loopback, so a connection between two of its processes
 * needs an address of another interface). Whatever runs in it (a WebRTC
 * stack that gathers a candidate on every interface, say) can reach no
 * address but its own.
 */
export class IsolatedNamespace {
  readonly name = `sb-iso-${randomBytes(3).toString('hex')}`
  private made = false

  async build (): Promise<void> {
    await run('ip', ['netns', 'add', this.name])
    this.made = true
    await run('ip', ['-n', this.name, 'link', 'set', 'lo', 'up'])
    await run('ip', ['-n', this.name, 'link', 'add', 'sbiso0', 'type', 'veth', 'peer', 'name', 'sbiso1'])
    await run('ip', ['-n', this.name, 'addr', 'add', `${ISOLATED_IP}/24`, 'dev', 'sbiso0'])
    for (const dev of ['sbiso0', 'sbiso1']) await run('ip', ['-n', this.name, 'link', 'set', dev, 'up'])
  }

  /** Kills what runs in it, then deletes it. Never throws. */
  async teardown (): Promise<void> {
    if (!this.made) return
    this.made = false
    await removeNamespaces([this.name])
  }
}

/** A `spareband start` process in a namespace; its control API, on 127.0.0.1 there, is asked through the CLI run in the same namespace. */
export class NetnsNode {
  private constructor (readonly ns: string, readonly dataDir: string, readonly proc: NodeProcess) {}

  /** `network`: a name or a definition file (--network); "local" unless given. */
  static async start (ns: string, options: { region?: string, config?: string, network?: string, args: string[] }): Promise<NetnsNode> {
    const dataDir = await tempDir('sb-netns-')
    await createIdentity(dataDir)
    await writeFile(join(dataDir, 'config.toml'), (options.region != null ? `region = "${options.region}"\n` : '') + (options.config ?? ''))
    const proc = new NodeProcess(dataDir, ['--network', options.network ?? 'local', '--api-port', '0', '--socks-port', '0', '--http-port', '0', ...options.args], {}, { prefix: inNetns(ns) })
    const node = new NetnsNode(ns, dataDir, proc)
    // a loaded 2-core machine starting three nodes at once
    await proc.ready(60_000)
    return node
  }

  private async cli (args: string[]): Promise<any> {
    const r = await runCli([...args, '--json', '--data-dir', this.dataDir], { prefix: inNetns(this.ns) })
    if (r.code !== 0) throw new Error(`spareband ${args.join(' ')} in ${this.ns} exited ${r.code}: ${r.stderr}`)
    return JSON.parse(r.stdout)
  }

  async status (): Promise<any> { return this.cli(['status']) }
  async peers (): Promise<any[]> { return this.cli(['peers']) }
}

export const NETNS_TARGET = resolve(import.meta.dirname, 'netns-target.ts')

/** The target server (netns-target.ts) run in a namespace, listening on `host`. */
export class NetnsTarget {
  port = 0
  blobSha256 = ''
  private readonly child: ChildProcess
  private readonly replies: Array<(line: string) => void> = []
  private readonly exited: Promise<void>
  stderr = ''

  constructor (ns: string, host: string, blobBytes: number) {
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, NETNS_TARGET, host, String(blobBytes)], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child.stderr!.on('data', d => { this.stderr += d })
    createInterface({ input: this.child.stdout! }).on('line', line => this.replies.shift()?.(line))
    this.exited = new Promise(resolve => this.child.once('exit', () => resolve()))
  }

  private async next (timeoutMs: number): Promise<any> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the target server did not answer in ${timeoutMs} ms: ${this.stderr}`)), timeoutMs)
      this.replies.push(line => { clearTimeout(timer); resolve(JSON.parse(line)) })
    })
  }

  async ready (timeoutMs = 30_000): Promise<void> {
    const exitedFirst = this.exited.then(() => { throw new Error(`the target server exited: ${this.stderr}`) })
    exitedFirst.catch(() => {})
    const info = await Promise.race([this.next(timeoutMs), exitedFirst])
    this.port = info.port
    this.blobSha256 = info.sha256
  }

  /** What it has seen: connections, who made them, requests. */
  async report (): Promise<{ connections: number, remotes: string[], requests: string[] }> {
    const answer = this.next(10_000)
    this.child.stdin!.write('report\n')
    return answer
  }

  async close (): Promise<void> {
    if (this.child.exitCode != null || this.child.signalCode != null) return
    this.child.stdin!.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000)
    await this.exited
    clearTimeout(timer)
  }
}
