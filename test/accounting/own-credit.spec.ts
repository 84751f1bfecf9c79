import { describe, it, expect } from 'vitest'
import { OwnCredit } from '../../src/accounting/own-credit.ts'

/**
 * A consumer's own balance between ledger readings: a ledger that holds a
 * receipt only once the exit countersigned it, and receipts signed,
 * answered and written on a clock the test moves.
 */
class Model {
  t = 0
  /** What the ledger holds: allowance less countersigned, written receipts. */
  held = 1000n
  /** Signed, not yet held. */
  inFlight = 0n
  reads = 0
  readonly credit = new OwnCredit({ read: () => { this.reads++; return this.held }, pending: () => this.inFlight, now: () => this.t, maxAgeMs: 1000 })

  sign (cost: bigint): void { this.inFlight += cost; this.credit.charge(cost) }
  countersign (cost: bigint): void { this.inFlight -= cost; this.held -= cost }
}

describe('own credit between ledger readings', () => {
  it('is the reading less what was signed since, and reads the ledger at most once a maxAgeMs', () => {
    const m = new Model()
    expect(m.credit.balance()).toBe(1000n)
    m.sign(100n)
    m.sign(100n)
    expect(m.credit.balance()).toBe(800n)
    m.countersign(100n)
    // the ledger now holds one of them; the reading is still the old one, and both were taken off it
    expect(m.credit.balance()).toBe(800n)
    expect(m.reads).toBe(1)
  })

  it('a new reading counts the receipts still on their way, neither losing nor doubling any', () => {
    const m = new Model()
    m.credit.balance()
    for (let i = 0; i < 8; i++) m.sign(50n) // eight in flight, 400 in all
    m.countersign(50n)
    m.t += 1000
    // read again: the ledger has one (950), seven are on their way (350)
    expect(m.credit.balance()).toBe(600n)
    expect(m.reads).toBe(2)
    for (let i = 0; i < 7; i++) m.countersign(50n)
    m.sign(100n)
    expect(m.credit.balance()).toBe(500n)
    m.t += 1000
    expect(m.credit.balance()).toBe(500n)
  })

  it('a receipt whose signing takes the reading also counts once', () => {
    const m = new Model()
    m.credit.balance()
    m.t += 5000
    // signed, then the check that follows reads the ledger, which does not hold it
    m.sign(300n)
    expect(m.credit.balance()).toBe(700n)
  })

  it('takes in credit earned meanwhile at the next reading, and a lower price charges back', () => {
    const m = new Model()
    m.credit.balance()
    m.sign(400n)
    m.credit.charge(-100n) // the exit's price was lower than the one we signed at
    expect(m.credit.balance()).toBe(700n)
    m.held += 500n // earned as an exit
    m.t += 1000
    expect(m.credit.balance()).toBe(1100n)
  })

  it('reads again when the clock steps back, rather than keeping an old reading until it catches up', () => {
    const m = new Model()
    m.t = 10_000
    m.held = 0n
    expect(m.credit.balance()).toBe(0n)
    m.held = 500n // earned, and the clock stepped back an hour
    m.t = 10_000 - 3_600_000
    expect(m.credit.balance()).toBe(500n)
  })
})
