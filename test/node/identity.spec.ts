import { describe, it, expect } from 'vitest'
import { mkdtemp, stat, readFile, writeFile, readdir, rename, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createIdentity, loadIdentity, loadOrCreateIdentity, identityPath } from '../../src/node/identity.ts'
import { Ledger } from '../../src/accounting/ledger.ts'

const tmp = async (): Promise<string> => mkdtemp(join(tmpdir(), 'sb-id-'))

describe('identity', () => {
  it('persists: the same peer id after reload', async () => {
    const dir = await tmp()
    const created = await createIdentity(dir)
    const loaded = await loadIdentity(dir)
    expect(loaded.peerId.toString()).toBe(created.peerId.toString())
    expect(created.peerId.type).toBe('Ed25519')
    // and signatures made with the loaded key verify with the created peer id
    const msg = new TextEncoder().encode('hello')
    expect(await created.peerId.publicKey!.verify(msg, await loaded.privateKey.sign(msg))).toBe(true)
  })

  it('writes the key with mode 0600', async () => {
    const dir = await tmp()
    await createIdentity(dir)
    expect((await stat(identityPath(dir))).mode & 0o777).toBe(0o600)
  })

  it('refuses to replace an existing key and keeps it', async () => {
    const dir = await tmp()
    const first = await createIdentity(dir)
    const before = await readFile(identityPath(dir))
    await expect(createIdentity(dir)).rejects.toHaveProperty('name', 'IdentityExistsError')
    expect(await readFile(identityPath(dir))).toEqual(before)
    expect((await loadIdentity(dir)).peerId.toString()).toBe(first.peerId.toString())
  })

  it('replaces the key with force, keeping the old one as identity.key.<peer id>.bak (0600)', async () => {
    const dir = await tmp()
    const first = await createIdentity(dir)
    const before = await readFile(identityPath(dir))
    const second = await createIdentity(dir, { force: true })
    expect(second.peerId.toString()).not.toBe(first.peerId.toString())
    expect((await loadIdentity(dir)).peerId.toString()).toBe(second.peerId.toString())
    const backup = join(dir, `identity.key.${first.peerId.toString()}.bak`)
    expect(second.replaced).toEqual({ peerId: first.peerId.toString(), file: backup })
    expect(await readFile(backup)).toEqual(before)
    expect((await stat(backup)).mode & 0o777).toBe(0o600)
  })

  it('force keeps an unreadable old key too, under a name of its own', async () => {
    const dir = await tmp()
    await writeFile(identityPath(dir), 'not a key')
    const created = await createIdentity(dir, { force: true })
    expect(created.replaced?.peerId).toBeUndefined()
    expect(await readFile(created.replaced!.file, 'utf8')).toBe('not a key')
    expect(created.replaced!.file).toMatch(/identity\.key\.unreadable-\d+\.bak$/)
  })

  it('force is refused while ledger.db holds the old identity\'s credits: a new key could not use them', async () => {
    const dir = await tmp()
    const first = await createIdentity(dir)
    const before = await readFile(identityPath(dir))
    await writeFile(join(dir, 'ledger.db'), '')
    const err = await createIdentity(dir, { force: true }).catch(e => e)
    expect(err).toHaveProperty('name', 'IdentityExistsError')
    expect(err.message).toContain(join(dir, 'ledger.db'))
    expect(err.message).toContain(first.peerId.toString())
    expect(await readFile(identityPath(dir))).toEqual(before)
    expect((await readdir(dir)).sort()).toEqual(['identity.key', 'ledger.db'])
  })

  it('init is refused beside a ledger.db whose key is missing, naming its peer and the backup to restore', async () => {
    const dir = await tmp()
    const first = await createIdentity(dir)
    // a real ledger, bound to the first identity, as a node leaves it
    const ledger = Ledger.open(join(dir, 'ledger.db'), { selfPeerId: first.peerId })
    await ledger.close()
    await rename(identityPath(dir), `${identityPath(dir)}.${first.peerId.toString()}.bak`)
    const err = await createIdentity(dir).catch(e => e)
    expect(err).toHaveProperty('name', 'IdentityExistsError')
    expect(err.message).toContain(`holds the credits and receipts of peer ${first.peerId.toString()}`)
    expect(err.message).toContain(`restore it (mv ${identityPath(dir)}.${first.peerId.toString()}.bak ${identityPath(dir)})`)
    await expect(stat(identityPath(dir))).rejects.toHaveProperty('code', 'ENOENT')
    // the node's start (loadIdentity) says the same, not "run init", which would refuse
    const missing = await loadIdentity(dir).catch(e => e)
    expect(missing).toHaveProperty('name', 'IdentityMissingError')
    expect(missing.message).toBe(`no identity at ${identityPath(dir)}, but ${join(dir, 'ledger.db')} holds the credits and receipts of peer ${first.peerId.toString()}: restore it (mv ${identityPath(dir)}.${first.peerId.toString()}.bak ${identityPath(dir)}) to keep them; to start over as a new peer, move ${join(dir, 'ledger.db')} (with the ledger.db-wal, -shm and .pending files beside it) aside, or use another --data-dir, then run init`)
    // with no backup here, it says to restore the key from one
    await rm(`${identityPath(dir)}.${first.peerId.toString()}.bak`)
    expect((await createIdentity(dir).catch(e => e)).message).toContain(`restore that key from a backup to ${identityPath(dir)}`)
    // a ledger no node has bound yet (or not a ledger at all) is no reason to refuse
    const fresh = await tmp()
    await writeFile(join(fresh, 'ledger.db'), '')
    expect((await createIdentity(fresh)).peerId).toBeDefined()
  })

  it('init without --force beside a ledger: keep both, or, when the ledger is another peer\'s, says whose', async () => {
    const dir = await tmp()
    const first = await createIdentity(dir)
    const ledger = Ledger.open(join(dir, 'ledger.db'), { selfPeerId: first.peerId })
    await ledger.close()
    const same = await createIdentity(dir).catch(e => e)
    expect(same).toHaveProperty('name', 'IdentityExistsError')
    expect(same.message).toMatch(/already exists, and .*ledger\.db beside it holds that identity's credits and receipts: keep both/)
    // a key copied in from another peer
    const other = await tmp()
    const second = await createIdentity(other)
    await writeFile(identityPath(dir), await readFile(identityPath(other)))
    const mismatch = await createIdentity(dir).catch(e => e)
    expect(mismatch.message).toBe(`${identityPath(dir)} (peer ${second.peerId.toString()}) already exists, but ${join(dir, 'ledger.db')} beside it holds the credits and receipts of peer ${first.peerId.toString()}: the node does not start with the two together. Put ${first.peerId.toString()}'s key in ${identityPath(dir)} (moving this one aside) to use that ledger, or move ${join(dir, 'ledger.db')} (with its -wal, -shm and .pending files) aside to start this peer afresh`)
  })

  it('says what to do when the key is missing or corrupt', async () => {
    const dir = await tmp()
    await expect(loadIdentity(dir)).rejects.toHaveProperty('name', 'IdentityMissingError')
    await writeFile(identityPath(dir), 'not a key')
    await expect(loadIdentity(dir)).rejects.toThrow(/not a valid private key .*; restore it from a backup or run "spareband init --force"$/)
  })

  it('a corrupt key beside its ledger: start and init --force both name the ledger\'s peer and its backup, not a way that is refused', async () => {
    const dir = await tmp()
    const first = await createIdentity(dir)
    const ledger = Ledger.open(join(dir, 'ledger.db'), { selfPeerId: first.peerId })
    await ledger.close()
    const backup = `${identityPath(dir)}.${first.peerId.toString()}.bak`
    await writeFile(backup, await readFile(identityPath(dir)))
    await writeFile(identityPath(dir), 'junk')
    const advice = `restore it (mv ${backup} ${identityPath(dir)}) to keep them; to start over as a new peer, move ${join(dir, 'ledger.db')} (with the ledger.db-wal, -shm and .pending files beside it) aside, or use another --data-dir, then run init`
    const start = await loadIdentity(dir).catch(e => e)
    expect(start).toHaveProperty('name', 'IdentityMissingError')
    expect(start.message).toMatch(new RegExp(`^${identityPath(dir).replaceAll('.', '\\.')} is not a valid private key \\(.*\\), and ${join(dir, 'ledger.db').replaceAll('.', '\\.')} beside it holds the credits and receipts of peer ${first.peerId.toString()}: `))
    expect(start.message.endsWith(advice)).toBe(true)
    const force = await createIdentity(dir, { force: true }).catch(e => e)
    expect(force).toHaveProperty('name', 'IdentityExistsError')
    expect(force.message).toBe(`${identityPath(dir)} is not a valid private key, and ${join(dir, 'ledger.db')} beside it holds the credits and receipts of peer ${first.peerId.toString()}, which only that peer's key can use, so --force does not replace it: ${advice}`)
    expect(await readFile(identityPath(dir), 'utf8')).toBe('junk')
  })

  it('loadOrCreateIdentity creates once, then loads', async () => {
    const dir = await tmp()
    const a = await loadOrCreateIdentity(dir)
    const b = await loadOrCreateIdentity(dir)
    expect(b.peerId.equals(a.peerId)).toBe(true)
  })

  it('loadOrCreateIdentity (the library\'s default) beside a ledger whose key is missing: the identity is missing, not one to make', async () => {
    const dir = await tmp()
    const first = await createIdentity(dir)
    const ledger = Ledger.open(join(dir, 'ledger.db'), { selfPeerId: first.peerId })
    await ledger.close()
    await rm(identityPath(dir))
    const err = await loadOrCreateIdentity(dir).catch(e => e)
    expect(err).toHaveProperty('name', 'IdentityMissingError')
    expect(err.message).toContain(`no identity at ${identityPath(dir)}, but ${join(dir, 'ledger.db')} holds the credits and receipts of peer ${first.peerId.toString()}`)
    // and no key was made meanwhile
    await expect(stat(identityPath(dir))).rejects.toHaveProperty('code', 'ENOENT')
  })
})
