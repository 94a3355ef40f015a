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
	// MaxTCPConns caps the open TCP connections (default 4096): past it a
	// new connection closes the oldest.
	MaxTCPConns int
	// TCPIdleTimeout closes a TCP connection that sends no query for that
	// long (default 10 s).
	TCPIdleTimeout time.Duration
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
	if c.MaxTCPConns <= 0 {
		c.MaxTCPConns = 4096
	}
	if c.TCPIdleTimeout <= 0 {
		c.TCPIdleTimeout = 10 * time.Second
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
