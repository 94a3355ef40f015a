//go:build dnsunpack

package dns

// parseQuery, built with -tags dnsunpack: miekg/dns' Msg.Unpack parses
// every query (bench/dnsparser's comparison).
func parseQuery(req []byte, q *query) int { return unpackQuery(req, q) }
