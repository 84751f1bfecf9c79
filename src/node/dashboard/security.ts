/**
 * What keeps the dashboard page, served without a token, from being turned
 * against its operator: response headers that let nothing but the page's
 * own inline script and style run, and nothing frame it; and a Host check
 * against DNS rebinding.
 */

import { isIP } from 'node:net'

/**
 * The headers of the page whose inline `<script>` and `<style>` tags carry
 * `nonce`. No origin but the node's own is reachable (`connect-src 'self'`
 * for the API), the favicon is a data: URL, and the token form can never
 * submit itself (`form-action 'none'`: a form that posted would put the
 * token in a URL the server sees).
 */
export function dashboardHeaders (nonce: string): Record<string, string> {
  return {
    'content-security-policy': [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src 'nonce-${nonce}'`,
      "connect-src 'self'",
      'img-src data:',
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'"
    ].join('; '),
    // for browsers that predate frame-ancestors
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    'cross-origin-opener-policy': 'same-origin'
  }
}

/**
 * Whether a request's Host header names this machine the way only a local
 * user would: an IP address, `localhost` (or a name under it, which browsers
 * keep on loopback), or the host the API was configured to listen on. A page
 * on evil.example whose DNS answer turns to 127.0.0.1 (DNS rebinding) sends
 * `Host: evil.example`; its scripts would then be same-origin with ours.
 * Browsers never let a page set Host, and a name cannot be rebound to an IP
 * literal, so this is enough.
 */
export function isLocalHostHeader (host: string | undefined, configuredHost: string): boolean {
  if (host == null) return false
  const m = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9.-]+))(?::\d{1,5})?$/i.exec(host)
  if (m == null) return false
  if (m[1] != null) return isIP(m[1]) === 6
  const name = m[2].toLowerCase().replace(/\.$/, '')
  if (isIP(name) === 4) return true
  if (name === 'localhost' || name.endsWith('.localhost')) return true
  return name === configuredHost.toLowerCase()
}
