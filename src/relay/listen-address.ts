import ipaddr from 'ipaddr.js'

/** True for 127.0.0.0/8, ::1 and "localhost": the only binds that need no credentials. */
export function isLoopback (host: string): boolean {
  if (host === 'localhost') return true
  try {
    return ipaddr.process(host.replace(/^\[|\]$/g, '')).range() === 'loopback'
  } catch {
    return false
  }
}
