/**
 * The node's Ed25519 identity, kept in `identity.key` (mode 0600) in the data
 * directory so the peer id is the same on every start.
 */

import { modeOpenToOthers, readableByOthersWarning } from './file-modes.ts'
import { readFile, writeFile, chmod, stat, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { IdentityExistsError, IdentityMissingError, fsErrorWords } from '../errors.ts'
import { LEDGER_FILE, makeDataDir } from './data-dir.ts'
import type { PrivateKey, PeerId } from '@libp2p/interface'

export const IDENTITY_FILE = 'identity.key'

export interface Identity {
  privateKey: PrivateKey
  peerId: PeerId
}

/** What createIdentity() did with the key it replaced (`force`). */
export interface ReplacedIdentity {
  /** The old key's peer id; undefined when the old file was not a key. */
  peerId?: string
  /** Where the old key is now: `identity.key.<peer id>.bak` beside the new one. */
  file: string
}

export function identityPath (dataDir: string): string {
  return join(dataDir, IDENTITY_FILE)
}

/**
 * Creates a fresh identity. Refuses when one exists unless `force`, so a
 * key is never lost by accident; and with `force` the old key is kept as
 * `identity.key.<peer id>.bak` (its mode kept), never deleted. `force` is
 * refused too while the data directory has a ledger.db: the ledger holds
 * the old identity's credits and receipts, bound to its peer id, so a new
 * key would not even start (Ledger: "belongs to peer X, not to Y") and the
 * credits would sit behind a key the operator may not know to keep.
 */
export async function createIdentity (dataDir: string, options: { force?: boolean } = {}): Promise<Identity & { replaced?: ReplacedIdentity }> {
  const file = identityPath(dataDir)
  await makeDataDir(dataDir)
  let replaced: ReplacedIdentity | undefined
  if (await exists(file)) {
    const ledger = join(dataDir, LEDGER_FILE)
    // beside a ledger, --force would be refused too: say so now rather than send the user to it
    if (options.force !== true && await exists(ledger)) {
      const [key, owner] = await Promise.all([loadIdentity(dataDir).then(i => i.peerId.toString(), () => undefined), ledgerOwner(ledger)])
      if (key != null && owner != null && key !== owner) {
        throw new IdentityExistsError(`${file} (peer ${key}) already exists, but ${ledger} beside it holds the credits and receipts of peer ${owner}: the node does not start with the two together. Put ${owner}'s key in ${file} (moving this one aside) to use that ledger, or move ${ledger} (with its -wal, -shm and .pending files) aside to start this peer afresh`)
      }
      throw new IdentityExistsError(`${file} already exists, and ${ledger} beside it holds that identity's credits and receipts: keep both (the node starts with them as they are); to start over as a new peer, move them (with the ${LEDGER_FILE}-wal, -shm and .pending files) aside together, or use another --data-dir`)
    }
    if (options.force !== true) throw new IdentityExistsError(`${file} already exists; pass --force to replace it (the old key is kept as ${IDENTITY_FILE}.<peer id>.bak)`)
    const old = await loadIdentity(dataDir).then(i => i.peerId.toString(), () => undefined)
    if (await exists(ledger)) {
      // a key that cannot be read is no key to keep: say whose the ledger is, and where that key may be
      const orphan = old == null ? await orphanLedger(dataDir, file) : undefined
      if (orphan != null) throw new IdentityExistsError(`${file} is not a valid private key, and ${ledger} beside it holds the credits and receipts of peer ${orphan.owner}, which only that peer's key can use, so --force does not replace it: ${orphan.advice}`)
      throw new IdentityExistsError(`${ledger} holds the credits and receipts of ${old ?? 'the identity in ' + file}, which only that key can use: a new identity would not start with it, so --force does not replace it. Keep ${file} to keep the credits; to start over as a new peer, move ${file} and ${ledger} (with the ${LEDGER_FILE}-wal, -shm and .pending files beside it) aside together, or use another --data-dir, then run init`)
    }
    replaced = { peerId: old, file: `${file}.${old ?? `unreadable-${Date.now()}`}.bak` }
  } else {
    await refuseBesideOrphanLedger(dataDir, file)
  }
  const privateKey = await generateKeyPair('Ed25519')
  // write then rename, so a crash never leaves a half-written key behind
  const tmp = `${file}.${process.pid}.tmp`
  try {
    await writeFile(tmp, privateKeyToProtobuf(privateKey), { mode: 0o600 })
  } catch (err: any) {
    await rm(tmp, { force: true }).catch(() => {})
    const words = fsErrorWords(err)
    if (words == null) throw err
    throw new Error(`cannot write a new identity in the data directory ${dataDir} (${words}, ${String(err.code)}): nothing was changed; make it writable, or use another --data-dir`, { cause: err })
  }
  // a rename keeps the old key's bytes and its mode (0600), the moment before the new key takes its name
  if (replaced != null) await rename(file, replaced.file)
  await rename(tmp, file)
  await chmod(file, 0o600)
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), ...(replaced != null ? { replaced } : {}) }
}

/**
 * No identity.key, but a ledger.db bound to a peer: its key went missing
 * (deleted, or left behind in a copy). A new key would not start with that
 * ledger, and its credits would stay behind the lost one: refused, naming
 * the peer, and the backup `init --force` made of it if there is one here.
 */
async function refuseBesideOrphanLedger (dataDir: string, file: string): Promise<void> {
  const orphan = await orphanLedger(dataDir, file)
  if (orphan == null) return
  throw new IdentityExistsError(`${orphan.ledgerFile} holds the credits and receipts of peer ${orphan.owner}, whose key is not in ${file}: a new identity would not start with that ledger, so init does not make one. ${orphan.advice}`)
}

/** The peer a ledger file is bound to; undefined when there is no file, it is bound to none, or it cannot be read (the node's start says what is wrong with it). */
async function ledgerOwner (ledgerFile: string): Promise<string | undefined> {
  if (!(await exists(ledgerFile))) return undefined
  // loaded only here: init on a fresh directory does not pay for node:sqlite
  const { Ledger } = await import('../accounting/ledger.ts')
  try {
    const ledger = Ledger.open(ledgerFile, { readOnly: true })
    try { return ledger.owner } finally { await ledger.close() }
  } catch {
    return undefined
  }
}

/** The peer whose ledger.db sits in `dataDir` without its key in `file`, and what to do about it; undefined when there is none. */
async function orphanLedger (dataDir: string, file: string): Promise<{ ledgerFile: string, owner: string, advice: string } | undefined> {
  const ledgerFile = join(dataDir, LEDGER_FILE)
  const owner = await ledgerOwner(ledgerFile)
  if (owner == null) return undefined
  const backup = `${file}.${owner}.bak`
  const restore = await exists(backup) ? `restore it (mv ${backup} ${file}) to keep them` : `restore that key from a backup to ${file} to keep them`
  return { ledgerFile, owner, advice: `${restore}; to start over as a new peer, move ${ledgerFile} (with the ${LEDGER_FILE}-wal, -shm and .pending files beside it) aside, or use another --data-dir, then run init` }
}

export async function loadIdentity (dataDir: string): Promise<Identity> {
  const file = identityPath(dataDir)
  let bytes: Uint8Array
  try {
    bytes = await readFile(file)
  } catch (err: any) {
    if (err.code === 'ENOENT') {
      // its ledger is here without it: init would refuse to make a new key, so say what init would
      const orphan = await orphanLedger(dataDir, file)
      if (orphan != null) throw new IdentityMissingError(`no identity at ${file}, but ${orphan.ledgerFile} holds the credits and receipts of peer ${orphan.owner}: ${orphan.advice}`)
      throw new IdentityMissingError(`no identity at ${file}; run "spareband init --data-dir ${dataDir}" first`)
    }
    throw err
  }
  let privateKey: PrivateKey
  try {
    privateKey = privateKeyFromProtobuf(bytes)
  } catch (err: any) {
    // init --force is refused beside a ledger (its credits are that key's): the way out is the key itself
    const orphan = await orphanLedger(dataDir, file)
    if (orphan != null) throw new IdentityMissingError(`${file} is not a valid private key (${err.message}), and ${orphan.ledgerFile} beside it holds the credits and receipts of peer ${orphan.owner}: ${orphan.advice}`)
    throw new IdentityMissingError(`${file} is not a valid private key (${err.message}); restore it from a backup or run "spareband init --force"`)
  }
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey) }
}

/**
 * Loads the identity, creating it first when the data directory has none
 * (library use). A ledger there without its key is a missing identity, as
 * for `start`: loadIdentity() says whose credits it holds and how to get
 * the key back, where createIdentity() would refuse in init's words.
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<Identity> {
  const file = identityPath(dataDir)
  if (await exists(file) || await orphanLedger(dataDir, file) != null) return loadIdentity(dataDir)
  return createIdentity(dataDir)
}

async function exists (file: string): Promise<boolean> {
  try {
    await stat(file)
    return true
  } catch {
    return false
  }
}

/**
 * A warning when identity.key can be read by others than its owner: a copy
 * restored from a backup (cp, scp, an archive) gets the mode of the day,
 * and whoever reads the key can sign receipts as this node and spend its
 * credits. Undefined when the key is private, missing, or on Windows (no
 * POSIX modes).
 */
export function identityModeWarning (dataDir: string): string | undefined {
  const file = identityPath(dataDir)
  const mode = modeOpenToOthers(file)
  return mode == null ? undefined : readableByOthersWarning(file, mode, 'can sign receipts as this node and spend its credits')
}
