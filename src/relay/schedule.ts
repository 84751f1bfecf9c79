/**
 * Share schedule: when an exit accepts new tunnels, in the machine's local
 * time. Grammar (case-insensitive, rules separated by commas or semicolons):
 *
 *   schedule := "always" | "all" | "never" | rule ("," rule)*
 *   rule     := days (" " window)+
 *   days     := day | day "-" day | "daily" | "weekdays" | "weekends"
 *   window   := "all" | HH:MM "-" HH:MM      (end < start wraps past midnight;
 *                                              end = start is refused: the whole day is "all")
 *
 * e.g. `mon-fri 00:00-07:00 19:00-24:00, sat-sun all`. A window that wraps,
 * `fri 22:00-02:00`, runs from Friday 22:00 to Saturday 02:00.
 */

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']
const MINUTES_PER_DAY = 24 * 60
const MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY

export class ScheduleError extends Error {
  static name = 'ScheduleError'
  constructor (message = 'Invalid schedule') {
    super(message)
    this.name = 'ScheduleError'
  }
}

/** Half-open intervals of minutes since Sunday 00:00, sorted and merged. */
export interface Schedule {
  readonly text: string
  readonly always: boolean
  readonly intervals: ReadonlyArray<readonly [number, number]>
}

/** 0 (Sunday) to 6 for "mon" or "monday", -1 for anything else. */
function dayIndex (s: string): number {
  const i = DAYS.indexOf(s.slice(0, 3))
  return i >= 0 && (s.length === 3 || s === fullName(i)) ? i : -1
}

function parseDay (s: string, rule: string): number {
  const i = dayIndex(s)
  if (i < 0) {
    throw new ScheduleError(`unknown day "${s}" in "${rule}": use mon, tue, wed, thu, fri, sat, sun, daily, weekdays or weekends`)
  }
  return i
}

function fullName (i: number): string {
  return ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'][i]
}

function parseDays (s: string, rule: string): number[] {
  if (s === 'daily' || s === 'all' || s === 'everyday') return [0, 1, 2, 3, 4, 5, 6]
  if (s === 'weekdays') return [1, 2, 3, 4, 5]
  if (s === 'weekends') return [6, 0]
  const parts = s.split('-')
  if (parts.length === 1) return [parseDay(parts[0], rule)]
  if (parts.length !== 2) throw new ScheduleError(`bad day range "${s}" in "${rule}"`)
  const from = parseDay(parts[0], rule)
  const to = parseDay(parts[1], rule)
  const out: number[] = []
  for (let d = from; ; d = (d + 1) % 7) {
    out.push(d)
    if (d === to) break
  }
  return out
}

/** A day, a day range or a named day set: what starts a rule, never a window. */
function looksLikeDays (s: string): boolean {
  if (['daily', 'everyday', 'weekdays', 'weekends'].includes(s)) return true
  const parts = s.split('-')
  return parts.length <= 2 && parts.every(p => dayIndex(p) >= 0)
}

function parseTime (s: string, rule: string): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(s)
  if (m == null) throw new ScheduleError(`bad time "${s}" in "${rule}": expected HH:MM`)
  const h = Number(m[1])
  const min = Number(m[2])
  if (h > 24 || min > 59 || (h === 24 && min !== 0)) throw new ScheduleError(`time "${s}" in "${rule}" is out of range 00:00-24:00`)
  return h * 60 + min
}

export function parseSchedule (text: string): Schedule {
  const t = text.trim().toLowerCase()
  // an empty value is more likely a lost shell variable than a wish to share always
  if (t === '') throw new ScheduleError('schedule is empty: use "always", "never" or rules such as "mon-fri 00:00-07:00, sat-sun all"')
  // "all" alone: every day, the whole day (as "daily all"), not a rule missing its window
  if (t === 'always' || t === 'all') return { text, always: true, intervals: [[0, MINUTES_PER_WEEK]] }
  if (t === 'never') return { text, always: false, intervals: [] }
  const raw: Array<[number, number]> = []
  for (const ruleText of t.split(/[,;]/)) {
    // "mon - fri 08:00 - 17:00" as people write it: a dash only ever joins a range
    const rule = ruleText.trim().replace(/\s*-\s*/g, '-')
    if (rule === '') continue
    const [dayPart, ...windows] = rule.split(/\s+/)
    // "00:00-07:00" alone: the window is there, the days are not
    if (/^\d{1,2}:\d{2}-\d{1,2}:\d{2}$/.test(dayPart)) throw new ScheduleError(`rule "${rule}" names no days: start it with them, e.g. "daily ${rule}" or "mon-fri ${rule}"`)
    // "mon,wed all" is two rules, "mon" and "wed all": say how several days are written
    if (windows.length === 0) throw new ScheduleError(`rule "${rule}" has no time window: add "all" or HH:MM-HH:MM${looksLikeDays(dayPart) ? ' (commas separate rules: for several days write a range such as "mon-wed", or a rule for each day)' : ''}`)
    const days = parseDays(dayPart, rule)
    for (const w of windows) {
      let start: number
      let end: number
      if (w === 'all') {
        start = 0
        end = MINUTES_PER_DAY
      } else {
        // "mon-fri 00:00-07:00 sat-sun all": the days of a second rule, written without its comma
        if (looksLikeDays(w)) throw new ScheduleError(`"${w}" in "${rule}" is a day, not a time window: separate rules with commas, e.g. "mon-fri 00:00-07:00, sat-sun all"`)
        const [a, b, extra] = w.split('-')
        if (b == null || extra != null) throw new ScheduleError(`bad window "${w}" in "${rule}": expected HH:MM-HH:MM or all`)
        start = parseTime(a, rule)
        end = parseTime(b, rule)
        if (start === MINUTES_PER_DAY) throw new ScheduleError(`window "${w}" in "${rule}" starts at 24:00`)
        // an empty window is a typo, not a day: 24 hours are written "all"
        if (end === start) throw new ScheduleError(`window "${w}" in "${rule}" starts and ends at the same time: write "all" for the whole day`)
        if (end < start) end += MINUTES_PER_DAY // wraps past midnight into the next day
      }
      for (const d of days) {
        const s = d * MINUTES_PER_DAY + start
        const e = d * MINUTES_PER_DAY + end
        if (e <= MINUTES_PER_WEEK) raw.push([s, e])
        else {
          raw.push([s, MINUTES_PER_WEEK])
          raw.push([0, e - MINUTES_PER_WEEK])
        }
      }
    }
  }
  if (raw.length === 0) throw new ScheduleError(`schedule "${text}" has no rules`)
  raw.sort((a, b) => a[0] - b[0])
  const merged: Array<[number, number]> = []
  for (const r of raw) {
    const last = merged[merged.length - 1]
    if (last != null && r[0] <= last[1]) last[1] = Math.max(last[1], r[1])
    else merged.push([r[0], r[1]])
  }
  const always = merged.length === 1 && merged[0][0] === 0 && merged[0][1] === MINUTES_PER_WEEK
  return { text, always, intervals: merged }
}

/** Minutes since Sunday 00:00 in local time. */
export function minuteOfWeek (date: Date): number {
  return date.getDay() * MINUTES_PER_DAY + date.getHours() * 60 + date.getMinutes()
}

export function isWithinSchedule (schedule: Schedule, date: Date): boolean {
  if (schedule.always) return true
  const m = minuteOfWeek(date)
  for (const [s, e] of schedule.intervals) if (m >= s && m < e) return true
  return false
}

/**
 * Minutes from `date` until the schedule next opens, or undefined for one
 * that never does. 0 while it is open.
 */
export function minutesUntilOpen (schedule: Schedule, date: Date): number | undefined {
  if (schedule.intervals.length === 0) return undefined
  const m = minuteOfWeek(date)
  let best = Number.POSITIVE_INFINITY
  for (const [s, e] of schedule.intervals) {
    if (m >= s && m < e) return 0
    best = Math.min(best, (s - m + MINUTES_PER_WEEK) % MINUTES_PER_WEEK)
  }
  return best
}

/**
 * When the schedule next opens: the local wall-clock minute it opens at,
 * made a date in local time, so a change of the clocks between now and
 * then (summer time) is counted; `date` itself while it is open.
 * Undefined for a schedule that never opens.
 */
export function nextOpening (schedule: Schedule, date: Date): Date | undefined {
  const wait = minutesUntilOpen(schedule, date)
  if (wait == null) return undefined
  if (wait === 0) return date
  const minute = date.getHours() * 60 + date.getMinutes() + wait
  // Date's own arithmetic on local fields: the day's 24 wall-clock hours, whatever their length
  const guess = new Date(date.getFullYear(), date.getMonth(), date.getDate() + Math.floor(minute / MINUTES_PER_DAY), Math.floor((minute % MINUTES_PER_DAY) / 60), minute % 60)
  // within a change of the clocks a wall-clock minute is there twice (Date takes the first) or not at all (it
  // takes the one an hour on): the first real minute around the guess at which the schedule is open
  const from = Math.max(date.getTime() + 1, guess.getTime() - HOUR_MS)
  for (let t = Math.ceil(from / MINUTE_MS) * MINUTE_MS; t <= guess.getTime() + HOUR_MS; t += MINUTE_MS) {
    if (isWithinSchedule(schedule, new Date(t))) return new Date(t)
  }
  return guess
}

const MINUTE_MS = 60_000
const HOUR_MS = 60 * MINUTE_MS

/**
 * Why an exit outside its schedule refuses, for a consumer that cannot know
 * the exit's time zone: the schedule as written, and when it opens next in
 * UTC ("exit shares only daily 00:00-01:00" said neither).
 */
export function outsideScheduleMessage (schedule: Schedule, date: Date): string {
  const opens = nextOpening(schedule, date)
  if (opens == null) return `the exit does not share at all now (exit.schedule "${schedule.text}")`
  return `the exit shares only "${schedule.text}" in its local time; it opens next at ${opens.toISOString().slice(0, 16).replace('T', ' ')} UTC`
}
