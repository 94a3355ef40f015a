package dns

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// zone is one zone Headway answers for.
type zone struct {
	name string // lower-case FQDN
	wire []byte // lower-case wire form
	// fallthrough zones (in-addr.arpa., ip6.arpa.) are authoritative only for
	// the names the index holds; other names in them are forwarded.
	fallthrough_ bool
	soa          []byte // the SOA RR, packed without compression
	soaRR        *mdns.SOA
}

func newZone(name string, ttl uint32, fall bool) *zone {
	z := &zone{name: name, wire: wireName(name), fallthrough_: fall}
	z.soaRR = &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: name, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: min(ttl, 300)},
		Ns:      nameServerName(name),
		Mbox:    "hostmaster." + name,
		Serial:  uint32(time.Now().Unix()),
		Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl,
	}
	if name == "." {
		z.soaRR.Ns, z.soaRR.Mbox = "ns.dns.", "hostmaster."
	}
	buf := make([]byte, 512)
	n, err := mdns.PackRR(z.soaRR, buf, 0, nil, false)
	if err != nil {
		panic(fmt.Sprintf("packing the SOA of %s: %v", name, err))
	}
	z.soa = buf[:n:n]
	return z
}

// newZones are the zones Headway answers for: the cluster zone first, then
// the reverse zones of cfg.ReverseCIDRs, then the fallthrough zones
// in-addr.arpa. and ip6.arpa. (those not already among them).
func newZones(cfg *Config, ttl uint32) []*zone {
	zones := []*zone{newZone(cfg.Zone, ttl, false)}
	seen := map[string]bool{cfg.Zone: true}
	for _, p := range cfg.ReverseCIDRs {
		name := reverseZone(p)
		if !seen[name] {
			seen[name] = true
			zones = append(zones, newZone(name, ttl, false))
		}
	}
	for _, name := range []string{"in-addr.arpa.", "ip6.arpa."} {
		if !seen[name] {
			zones = append(zones, newZone(name, ttl, true))
		}
	}
	return zones
}

// zoneOf is the most specific of zones containing the FQDN name, or nil.
func zoneOf(zones []*zone, name string) *zone {
	var best *zone
	for _, z := range zones {
		if name == z.name || strings.HasSuffix(name, "."+z.name) {
			if best == nil || len(z.name) > len(best.name) {
				best = z
			}
		}
	}
	return best
}

// reverseZone is the reverse zone covering p, rounded out to whole octets
// (IPv4) or nibbles (IPv6).
func reverseZone(p netip.Prefix) string {
	p = p.Masked()
	a := p.Addr()
	if a.Is4() {
		bits := p.Bits() / 8 * 8
		b := a.As4()
		var labels []string
		for i := bits/8 - 1; i >= 0; i-- {
			labels = append(labels, fmt.Sprint(b[i]))
		}
		return strings.Join(append(labels, "in-addr.arpa."), ".")
	}
	bits := p.Bits() / 4 * 4
	b := a.As16()
	var labels []string
	for i := bits/4 - 1; i >= 0; i-- {
		nib := b[i/2]
		if i%2 == 0 {
			nib >>= 4
		}
		labels = append(labels, fmt.Sprintf("%x", nib&0xf))
	}
	return strings.Join(append(labels, "ip6.arpa."), ".")
}

// wireName is the uncompressed wire form of a lower-case FQDN.
func wireName(name string) []byte {
	buf := make([]byte, 256)
	n, err := mdns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		panic(fmt.Sprintf("packing %q: %v", name, err))
	}
	return buf[:n:n]
}

// wireKey is the index key of a presentation-form name: its lower-case wire
// form as a string; "" when it is not a valid name.
func wireKey(name string) string {
	if k, ok := fastWireKey(name); ok {
		return k
	}
	var buf [256]byte
	n, err := mdns.PackDomainName(strings.ToLower(mdns.Fqdn(name)), buf[:], 0, nil, false)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// fastWireKey encodes the common case, a lower-case FQDN of plain labels,
// without the general packer.
func fastWireKey(name string) (string, bool) {
	if len(name) < 2 || len(name) > 254 || name[len(name)-1] != '.' {
		return "", false
	}
	buf := make([]byte, len(name)+1)
	start, out := 0, 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			l := i - start
			if l == 0 || l > 63 {
				return "", false
			}
			buf[out] = byte(l)
			copy(buf[out+1:], name[start:i])
			out += 1 + l
			start = i + 1
		case c == '\\' || ('A' <= c && c <= 'Z'):
			return "", false
		}
	}
	buf[out] = 0
	return string(buf[:out+1]), true
}
