//go:build !dnsunpack

package dns

// parseQuery is the parser every query goes through: the hand-written
// parse (query.go). Built with -tags dnsunpack, the server parses with
// miekg/dns' Msg.Unpack instead (parser_unpack.go); bench/dnsparser compares
// the two in the same server loop.
func parseQuery(req []byte, q *query) int { return parse(req, q) }
