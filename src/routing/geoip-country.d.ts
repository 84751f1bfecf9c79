/**
 * The part of `geoip-country` we use; the package ships no types. Only the
 * offline lookup is declared: `updateDatabase` downloads, and a node must
 * never do that behind its operator's back.
 */
declare module 'geoip-country' {
  interface GeoIpCountry {
    /** ISO 3166-1 alpha-2, upper case: `DE`. */
    country: string
    name?: string
    continent?: string
  }
  const geoip: {
    /** null for unknown, private or malformed addresses. */
    lookup (ip: string | number): GeoIpCountry | null
  }
  export default geoip
}
