import { describe, expect, it } from 'vitest'
import { bytesText, threeDigits } from '../../src/byte-units.ts'

describe('bytesText', () => {
  it('names the largest decimal unit the count reaches, with three significant digits at most', () => {
    expect(bytesText(999)).toBe('0.999 kB')
    expect(bytesText(1234)).toBe('1.23 kB')
    expect(bytesText(1e6)).toBe('1 MB')
    expect(bytesText(8 * 1024 * 1024)).toBe('8.39 MB')
    expect(bytesText(123_456_789)).toBe('123 MB')
    expect(bytesText(2e9)).toBe('2 GB')
    expect(bytesText(1.5e12)).toBe('1.5 TB')
    expect(bytesText(4321e12)).toBe('4321 TB')
  })

  it('rounds to three significant digits, whole numbers from 100 up', () => {
    expect(threeDigits(0.012345)).toBe('0.0123')
    expect(threeDigits(12.345)).toBe('12.3')
    expect(threeDigits(99.95)).toBe('100')
    expect(threeDigits(1234.5)).toBe('1235')
  })
})
