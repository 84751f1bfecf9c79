import { describe, it, expect } from 'vitest'
import { formatPortList, parsePortList, portAllowed } from '../../src/relay/ports.ts'

describe('port lists', () => {
  it('parses numbers, strings, ranges and comma lists, merged and sorted', () => {
    expect(parsePortList([443, '80', '8000-8100,8050-8200'])).toEqual([[80, 80], [443, 443], [8000, 8200]])
    expect(formatPortList(parsePortList(['81', '80', '82-90']))).toBe('80-90')
  })

  it('knows the reduced preset', () => {
    const r = parsePortList(['reduced'])
    expect(portAllowed(r, 443)).toBe(true)
    expect(portAllowed(r, 22)).toBe(true)
    expect(portAllowed(r, 25)).toBe(false) // SMTP is not in ReducedExitPolicy
    expect(portAllowed(r, 6881)).toBe(false)
  })

  it('rejects bad entries', () => {
    expect(() => parsePortList(['0'])).toThrow(/out of range/)
    expect(() => parsePortList(['65536'])).toThrow(/out of range/)
    expect(() => parsePortList(['90-80'])).toThrow(/empty/)
    expect(() => parsePortList(['http'])).toThrow(/not a port/)
    expect(() => parsePortList(['1-2-3'])).toThrow(/not a port/)
    expect(() => parsePortList(['80,,443'])).toThrow(/empty entry/)
    expect(() => parsePortList(['80,443,'])).toThrow(/empty entry/)
    expect(() => parsePortList([80, '', 443])).toThrow(/empty entry/)
    // blanks alone are no ports at all, which the config words for itself
    expect(parsePortList(['', ' , '])).toEqual([])
  })
})
