import { describe, it, expect } from 'vitest'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { QuotaTracker } from '../../src/relay/quota.ts'

describe('exit quota', () => {
  it('counts per local day and month and says which is used up', () => {
    let now = new Date(2026, 10, 25, 23, 59)
    const q = new QuotaTracker({ dailyBytes: 1000, monthlyBytes: 2500, now: () => now })
    q.add(999)
    expect(q.exceeded()).toBeUndefined()
    q.add(1)
    expect(q.exceeded()).toBe('daily')
    now = new Date(2026, 10, 26, 0, 1) // a new day
    expect(q.exceeded()).toBeUndefined()
    q.add(1500)
    // both used up (1500 today, 2500 this month): the monthly one, which keeps the exit closed past midnight
    expect(q.exceeded()).toBe('monthly')
    now = new Date(2026, 10, 27, 8)
    expect(q.exceeded()).toBe('monthly') // 2500 this month
    now = new Date(2026, 11, 1, 0, 0) // a new month
    expect(q.exceeded()).toBeUndefined()
    expect(q.usage()).toMatchObject({ dayBytes: 0, monthBytes: 0, month: '2026-12' })
  })

  it('0 means unlimited', () => {
    const q = new QuotaTracker({ dailyBytes: 0, monthlyBytes: 0 })
    q.add(1e15)
    expect(q.exceeded()).toBeUndefined()
  })

  it('persists across instances and refuses a broken file instead of resetting it', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'sb-quota-')), 'exit-usage.json')
    const now = (): Date => new Date(2026, 10, 25, 12)
    const a = new QuotaTracker({ dailyBytes: 100, monthlyBytes: 0, file, now })
    a.add(150)
    a.flush()
    const b = new QuotaTracker({ dailyBytes: 100, monthlyBytes: 0, file, now })
    expect(b.exceeded()).toBe('daily')
    expect(b.usage().dayBytes).toBe(150)
    await writeFile(file, '{not json')
    expect(() => new QuotaTracker({ dailyBytes: 100, monthlyBytes: 0, file, now })).toThrow(/exit-usage\.json/)
  })
  it('refuses a saved file that is JSON but not whole counters, instead of counting from 0 again', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'sb-quota-')), 'exit-usage.json')
    const now = (): Date => new Date(2026, 10, 25, 12)
    const cases: Array<[string, RegExp]> = [
      // a counter hand-edited or written by another tool as a string
      ['{"day":"2026-11-25","dayBytes":"150","month":"2026-11","monthBytes":150}', /"dayBytes" is "150", not a byte count/],
      // the day lost: read as another day, the day's count would start at 0
      ['{"dayBytes":150,"monthBytes":150}', /"day" is missing, not a YYYY-MM-DD date/],
      ['{"day":"2026-11-25","dayBytes":150,"month":"2026-11","monthBytes":-5}', /"monthBytes" is -5, not a byte count/],
      // more than any exit carries, or not whole: a hand edit or damage
      ['{"day":"2026-11-25","dayBytes":1e30,"month":"2026-11","monthBytes":150}', /"dayBytes" is 1e\+30, not a byte count/],
      ['{"day":"2026-11-25","dayBytes":150.5,"month":"2026-11","monthBytes":150}', /"dayBytes" is 150.5, not a byte count/],
      ['{"day":"2026-11-25","dayBytes":150,"month":11,"monthBytes":150}', /"month" is 11, not a YYYY-MM month/],
      ['{}', /"day" is missing/],
      ['[150]', /not a JSON object/],
      ['null', /not a JSON object/]
    ]
    for (const [text, reason] of cases) {
      await writeFile(file, text)
      expect(() => new QuotaTracker({ dailyBytes: 100, monthlyBytes: 0, file, now }), text).toThrow(reason)
      expect(() => new QuotaTracker({ dailyBytes: 100, monthlyBytes: 0, file, now }), text).toThrow(`${file}: cannot read exit usage counters`)
    }
    // a whole file still loads as it is
    await writeFile(file, '{"day":"2026-11-25","dayBytes":150,"month":"2026-11","monthBytes":150}\n')
    expect(new QuotaTracker({ dailyBytes: 100, monthlyBytes: 0, file, now }).exceeded()).toBe('daily')
  })
})
