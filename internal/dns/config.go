// Package dns is Headway's cluster DNS server: the Kubernetes DNS-Based
// Service Discovery specification (schema 1.1.0) answered from an index that
// client-go informers keep current (index.go, model.go, source.go), served
// from tight UDP read loops and a simple TCP path (server.go), on the wire
// format of github.com/miekg/dns (handler.go, answer.go).
//
// All work happens when the cluster changes: every name the cluster defines
// is a node in an immutable, sharded index published atomically; a node's
// packed answers are built once, the first time they are asked for, and
// reused until the node is replaced. Queries never block on updates.
package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Pod record modes (`pods` in CoreDNS' kubernetes plugin).
const (
	// PodsDisabled answers no a-b-c-d.<ns>.pod.<zone> names.
	PodsDisabled = "disabled"
	// PodsInsecure answers any well-formed address in an existing namespace.
	PodsInsecure = "insecure"
	// PodsVerified answers only addresses of existing pods in that namespace.
	PodsVerified = "verified"
)

// SchemaVersion is the DNS schema version served at dns-version.<zone>.
const SchemaVersion = "1.1.0"

// Config configures the DNS server.
type Config struct {
	// Zone is the cluster domain, normalised: lower case, without the
	// trailing dot (cluster.local). Required.
	Zone string
	// ReverseCIDRs are the service and pod ranges: Headway is authoritative
	// for their reverse zones (rounded out to whole octets or nibbles).
	// PTR records for addresses outside them are still answered; other
	// reverse names outside them are forwarded.
	ReverseCIDRs []netip.Prefix
	// TTL of every record, and the SOA minimum of negative answers.
	TTL time.Duration
	// PodMode is PodsDisabled, PodsInsecure or PodsVerified.
	PodMode string
	// Upstreams receive names outside the cluster zones (host:port). Empty:
	// such names are REFUSED.
	Upstreams []string
	// RecursionFrom are the client ranges allowed to use the upstreams
	// (loopback always is); others get REFUSED for names outside the zones.
	RecursionFrom []netip.Prefix
	// UpstreamTimeout bounds one forwarded exchange (default 2 s).
	UpstreamTimeout time.Duration
	// Logger receives one line per event that matters.
	Logger *slog.Logger
	// Metrics receive the counters and histograms (default: DefaultMetrics,
	// registered with the default Prometheus registry).
	Metrics *Metrics
}

func (c *Config) defaults() error {
	if c.Zone == "" {
		return errors.New("no cluster domain (Config.Zone)")
	}
	if c.Zone != strings.ToLower(strings.TrimSuffix(c.Zone, ".")) {
		return fmt.Errorf("cluster domain %q: want it normalised, lower case without the trailing dot", c.Zone)
	}
	c.Zone = mdns.Fqdn(c.Zone) // as names in messages end
	if _, ok := mdns.IsDomainName(c.Zone); !ok {
		return fmt.Errorf("cluster domain %q is not a domain name", c.Zone)
	}
	if c.TTL <= 0 {
		c.TTL = 5 * time.Second
	}
	if c.TTL > time.Duration(1<<31-1)*time.Second {
		return errors.New("DNS TTL too large")
	}
	switch c.PodMode {
	case "":
		c.PodMode = PodsVerified
	case PodsDisabled, PodsInsecure, PodsVerified:
	default:
		return fmt.Errorf("pod records mode %q: want disabled, insecure or verified", c.PodMode)
	}
	if c.UpstreamTimeout <= 0 {
		c.UpstreamTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	for i, u := range c.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			c.Upstreams[i] = net.JoinHostPort(u, "53")
		}
	}
	return nil
}

// ParseUpstreams turns the --dns-upstream flag into upstream addresses:
// "none" (no upstream), a resolv.conf path (contains a '/'), or a
// comma-separated host[:port] list.
func ParseUpstreams(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "" || v == "none":
		return nil, nil
	case strings.Contains(v, "/"):
		cc, err := mdns.ClientConfigFromFile(v)
		if err != nil {
			return nil, fmt.Errorf("reading upstream resolvers from %s: %w", v, err)
		}
		var out []string
		for _, s := range cc.Servers {
			out = append(out, net.JoinHostPort(s, cc.Port))
		}
		return out, nil
	default:
		var out []string
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(s); err != nil {
				if _, err := netip.ParseAddr(s); err != nil {
					return nil, fmt.Errorf("upstream %q: want ip or ip:port", s)
				}
				s = net.JoinHostPort(s, "53")
			}
			out = append(out, s)
		}
		return out, nil
	}
}

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
		Ns:      "ns.dns." + name,
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
