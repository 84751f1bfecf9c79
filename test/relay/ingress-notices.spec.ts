import { describe, it, expect } from 'vitest'
import { NoticeLimiter } from '../../src/notice-limiter.ts'

describe('NoticeLimiter: refusals in the operator\'s log', () => {
  it('lets `limit` a window through, holds the rest, and tells the next one through how many it held', () => {
    let now = 0
    const limiter = new NoticeLimiter(3, 60_000, () => now)
    expect([limiter.take(), limiter.take(), limiter.take()]).toEqual([0, 0, 0])
    for (let i = 0; i < 50; i++) expect(limiter.take()).toBeUndefined()
    now = 59_999
    expect(limiter.take()).toBeUndefined()
    now = 60_000
    expect(limiter.take()).toBe(51)
    expect(limiter.take()).toBe(0)
  })
})

describe('Ingress.refused', () => {
  it('reports what the client sent without its control characters, and cut short', async () => {
    const { Ingress } = await import('../../src/relay/ingress.ts')
    const { defaultLogger } = await import('@libp2p/logger')
    const notices: any[] = []
    const ingress = new Ingress({ client: undefined as any, credentials: {}, log: defaultLogger().forComponent('test'), onRefusal: n => notices.push(n) })
    ingress.refused('socks5', 'targeting', 'proxy user name "\x1b[2J\nfake line" is not ok')
    ingress.refused('http', 'targeting', `GET http://x/${'a'.repeat(8000)}: bad`)
    expect(notices[0]).toEqual({ proxy: 'socks5', kind: 'targeting', reason: 'proxy user name "\\x1b[2J\\x0afake line" is not ok', suppressed: 0 })
    expect(notices[1].reason.length).toBeLessThan(400)
  })
})
