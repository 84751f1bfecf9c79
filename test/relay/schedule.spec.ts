import { describe, it, expect } from 'vitest'
import { isWithinSchedule, minutesUntilOpen, nextOpening, outsideScheduleMessage, parseSchedule } from '../../src/relay/schedule.ts'

// 2026-11-23 is a Monday; Date(y, m, d, h, min) is local time, as the schedule is
const at = (day: number, h: number, m = 0): Date => new Date(2026, 10, 23 + ((day + 6) % 7), h, m)
const MON = 1; const FRI = 5; const SAT = 6; const SUN = 0

describe('share schedule', () => {
  it('"always" and "never"', () => {
    expect(isWithinSchedule(parseSchedule('always'), at(MON, 3))).toBe(true)
    expect(isWithinSchedule(parseSchedule('never'), at(MON, 3))).toBe(false)
  })

  it('"all" alone, in any case and with white space around it, is always, as "daily all" is', () => {
    for (const text of ['all', 'ALL', ' All\t']) {
      const s = parseSchedule(text)
      expect(s.always, text).toBe(true)
      expect(s.intervals).toEqual(parseSchedule('daily all').intervals)
      expect(isWithinSchedule(s, at(SUN, 23, 59))).toBe(true)
    }
  })

  it('weekday nights and whole weekends', () => {
    const s = parseSchedule('mon-fri 00:00-07:00, sat-sun all')
    expect(isWithinSchedule(s, at(MON, 0))).toBe(true)
    expect(isWithinSchedule(s, at(MON, 6, 59))).toBe(true)
    expect(isWithinSchedule(s, at(MON, 7, 0))).toBe(false)
    expect(isWithinSchedule(s, at(FRI, 12))).toBe(false)
    expect(isWithinSchedule(s, at(SAT, 12))).toBe(true)
    expect(isWithinSchedule(s, at(SUN, 23, 59))).toBe(true)
  })

  it('takes spaces around the dashes of day ranges and windows, as people write them', () => {
    const spaced = parseSchedule('mon - fri 08:00 - 17:00,  sat -sun  all')
    expect(spaced.intervals).toEqual(parseSchedule('mon-fri 08:00-17:00, sat-sun all').intervals)
    expect(isWithinSchedule(spaced, at(MON, 8))).toBe(true)
    expect(isWithinSchedule(spaced, at(MON, 17))).toBe(false)
  })

  it('windows that wrap past midnight, including Saturday into Sunday', () => {
    const s = parseSchedule('fri 22:00-02:00; sat 23:00-01:00')
    expect(isWithinSchedule(s, at(FRI, 21, 59))).toBe(false)
    expect(isWithinSchedule(s, at(FRI, 23))).toBe(true)
    expect(isWithinSchedule(s, at(SAT, 1, 59))).toBe(true)
    expect(isWithinSchedule(s, at(SAT, 2))).toBe(false)
    expect(isWithinSchedule(s, at(SUN, 0, 30))).toBe(true)
    expect(isWithinSchedule(s, at(SUN, 1))).toBe(false)
  })

  it('several windows per rule and named day sets', () => {
    const s = parseSchedule('weekdays 00:00-07:00 19:00-24:00, weekends all')
    expect(isWithinSchedule(s, at(MON, 20))).toBe(true)
    expect(isWithinSchedule(s, at(MON, 12))).toBe(false)
    expect(parseSchedule('daily all').always).toBe(true)
    expect(parseSchedule('sat-fri all').always).toBe(true) // a range that wraps the week
  })

  it('rejects bad input with a message that names the problem', () => {
    expect(() => parseSchedule('funday all')).toThrow(/unknown day "funday"/)
    expect(() => parseSchedule('mon 25:00-26:00')).toThrow(/out of range/)
    expect(() => parseSchedule('mon 7-9')).toThrow(/expected HH:MM/)
    expect(() => parseSchedule('mon')).toThrow(/no time window/)
    expect(() => parseSchedule('mon 09:00')).toThrow(/bad window/)
    expect(() => parseSchedule(',')).toThrow(/no rules/)
  })

  it('a window without days is said to lack days, not a window; a comma list of days is said to be rules', () => {
    // both read 'has no time window: add "all" or HH:MM-HH:MM', which the first plainly has
    expect(() => parseSchedule('00:00-07:00')).toThrow('rule "00:00-07:00" names no days: start it with them, e.g. "daily 00:00-07:00" or "mon-fri 00:00-07:00"')
    expect(() => parseSchedule('sat-sun all, 22:00-06:00')).toThrow('rule "22:00-06:00" names no days')
    expect(() => parseSchedule('mon,wed all')).toThrow('rule "mon" has no time window: add "all" or HH:MM-HH:MM (commas separate rules: for several days write a range such as "mon-wed", or a rule for each day)')
  })

  it('refuses a window that starts and ends at the same time, pointing to "all"', () => {
    // it read as a 24-hour window that wraps into the next day
    expect(() => parseSchedule('mon 10:00-10:00')).toThrow(/same time.*"all"/)
    expect(() => parseSchedule('sat 00:00-00:00')).toThrow(/same time/)
    // the whole day written out is still fine, and so is a window that wraps
    expect(isWithinSchedule(parseSchedule('mon 00:00-24:00'), at(MON, 23, 59))).toBe(true)
    expect(isWithinSchedule(parseSchedule('mon 00:00-24:00'), at(FRI, 12))).toBe(false)
    expect(isWithinSchedule(parseSchedule('mon 10:00-09:59'), at(MON, 9, 59))).toBe(false)
  })

  it('refuses an empty schedule instead of sharing always', () => {
    expect(() => parseSchedule('')).toThrow(/empty.*"always"/)
    expect(() => parseSchedule('   ')).toThrow(/empty/)
  })

  it('a second rule without its comma gets a hint to separate rules with commas', () => {
    expect(() => parseSchedule('mon-fri 00:00-07:00 sat-sun all')).toThrow(/"sat-sun" .*is a day.*separate rules with commas/)
    expect(() => parseSchedule('mon 00:00-07:00 weekends all')).toThrow(/separate rules with commas/)
    expect(() => parseSchedule('mon 00:00-07:00 saturday all')).toThrow(/separate rules with commas/)
    // not a day: still the plain message
    expect(() => parseSchedule('mon 00:00-07:00 noon')).toThrow(/bad window "noon"/)
  })
})

describe('when a closed schedule opens next', () => {
  it('counts the minutes to the next window, across midnight and the week\'s end', () => {
    const s = parseSchedule('mon-fri 09:00-17:00')
    // Friday 2026-11-27 18:30 local: next Monday 09:00, 2 days 14 h 30 min on
    expect(minutesUntilOpen(s, new Date(2026, 10, 27, 18, 30))).toBe(2 * 1440 + 14 * 60 + 30)
    // Monday 08:59: one minute; inside: 0
    expect(minutesUntilOpen(s, new Date(2026, 10, 30, 8, 59))).toBe(1)
    expect(minutesUntilOpen(s, new Date(2026, 10, 30, 9, 0))).toBe(0)
    expect(minutesUntilOpen(parseSchedule('never'), new Date())).toBeUndefined()
  })

  it('tells a consumer, which cannot know the exit\'s time zone, the schedule and when it opens in UTC', () => {
    const at = new Date(2026, 10, 27, 18, 30, 42, 500)
    const opens = new Date(2026, 10, 30, 9, 0)
    expect(outsideScheduleMessage(parseSchedule('mon-fri 09:00-17:00'), at)).toBe(`the exit shares only "mon-fri 09:00-17:00" in its local time; it opens next at ${opens.toISOString().slice(0, 16).replace('T', ' ')} UTC`)
    expect(outsideScheduleMessage(parseSchedule('never'), at)).toBe('the exit does not share at all now (exit.schedule "never")')
  })

  it('says the right UTC time of the next opening across a change of the clocks', () => {
    const tz = process.env.TZ
    // Node reads TZ again when it is set: New York leaves summer time on 2026-11-01 at 02:00
    process.env.TZ = 'America/New_York'
    try {
      // Saturday 2026-10-31 12:00 EDT (16:00 UTC): Monday 00:00 is EST, 05:00 UTC, not 04:00
      const sat = new Date('2026-10-31T16:00:00Z')
      expect(sat.getHours()).toBe(12)
      expect(nextOpening(parseSchedule('mon 00:00-01:00'), sat)?.toISOString()).toBe('2026-11-02T05:00:00.000Z')
      expect(outsideScheduleMessage(parseSchedule('mon 00:00-01:00'), sat)).toBe('the exit shares only "mon 00:00-01:00" in its local time; it opens next at 2026-11-02 05:00 UTC')
      // and into summer time: 2027-03-14 02:00 EST is 03:00 EDT; Monday 09:00 EDT is 13:00 UTC
      expect(nextOpening(parseSchedule('mon 09:00-10:00'), new Date('2027-03-13T17:00:00Z'))?.toISOString()).toBe('2027-03-15T13:00:00.000Z')
      // inside the changes themselves: 01:30 is there twice on 2026-11-01 (at 01:10 EST, the next is EST's, 06:30 UTC);
      // 02:30 is not there on 2027-03-14, and a window from it is open from 03:00 EDT (07:00 UTC)
      expect(nextOpening(parseSchedule('sun 01:30-02:00'), new Date('2026-11-01T06:10:00Z'))?.toISOString()).toBe('2026-11-01T06:30:00.000Z')
      expect(nextOpening(parseSchedule('sun 02:30-04:00'), new Date('2027-03-14T06:00:00Z'))?.toISOString()).toBe('2027-03-14T07:00:00.000Z')
      // open now: now
      const open = new Date('2026-11-02T05:30:00Z')
      expect(nextOpening(parseSchedule('mon 00:00-01:00'), open)).toBe(open)
    } finally {
      if (tz == null) delete process.env.TZ
      else process.env.TZ = tz
    }
  })
})
