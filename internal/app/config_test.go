package app

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/headway/headway/internal/proxy"
)

// The defaults parse into the documented addresses.
func TestConfigDefaults(t *testing.T) {
	o := DefaultOptions()
	c, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]any{
		"service range": c.ServiceCIDR, "pod range": c.ClusterCIDR,
		"kubernetes IP": c.KubernetesIP, "DNS IP": c.DNSServiceIP, "gateway": c.Gateway,
		"domain": c.ClusterDomain, "bridge": c.Bridge, "proxy table": proxyTable(c.Bridge),
	} {
		want := map[string]any{
			"service range": netip.MustParsePrefix("198.19.0.0/16"), "pod range": netip.MustParsePrefix("198.18.0.0/16"),
			"kubernetes IP": netip.MustParseAddr("198.19.0.1"), "DNS IP": netip.MustParseAddr("198.19.0.10"),
			"gateway": netip.MustParseAddr("198.18.0.1"), "domain": "cluster.local", "bridge": "headway0",
			"proxy table": proxy.TableName,
		}[name]
		if got != want {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
}

func TestConfigFromFlags(t *testing.T) {
	o := DefaultOptions()
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--service-cidr", "198.19.236.5/22", "--cluster-cidr", "198.18.236.0/22",
		"--cluster-domain", "Example.TEST.", "--bridge", "hwdb0"}); err != nil {
		t.Fatal(err)
	}
	c, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.ServiceCIDR != netip.MustParsePrefix("198.19.236.0/22") || c.KubernetesIP != netip.MustParseAddr("198.19.236.1") ||
		c.DNSServiceIP != netip.MustParseAddr("198.19.236.10") || c.Gateway != netip.MustParseAddr("198.18.236.1") ||
		c.ClusterDomain != "example.test" || proxyTable(c.Bridge) != "headway-proxy-hwdb0" {
		t.Fatalf("got %+v", c)
	}
	// A range too small for the tenth address has no DNS Service address,
	// and says why; the server still starts.
	o.ServiceCIDR = "198.19.0.0/29"
	if c, err = o.Config(); err != nil || c.DNSServiceIP.IsValid() || c.DNSServiceIPError == nil {
		t.Fatalf("/29: %v %v %v", err, c.DNSServiceIP, c.DNSServiceIPError)
	}
}

// --allocate-node-cidrs: the node's address defaults to the --listen
// address when that is one; --node-ip wins; without the flag the node
// keeps the bridge's address (no NodeIP), as a node alone always had.
func TestNodeIPDefault(t *testing.T) {
	for _, c := range []struct {
		listen, nodeIP string
		allocate       bool
		want           string
	}{
		{"198.18.250.1:6443", "", true, "198.18.250.1"},
		{"198.18.250.1:6443", "198.18.250.7", true, "198.18.250.7"},
		{"0.0.0.0:6443", "", true, "invalid IP"},
		{"127.0.0.1:6443", "", true, "invalid IP"},
		{"198.18.250.1:6443", "", false, "invalid IP"},
	} {
		o := DefaultOptions()
		o.Listen, o.Agent.NodeIP, o.AllocateNodeCIDRs = c.listen, c.nodeIP, c.allocate
		cfg, err := o.Config()
		if err != nil || cfg.NodeIP.String() != c.want {
			t.Errorf("--listen %s --node-ip %q --allocate-node-cidrs=%v: node IP %s, %v; want %s", c.listen, c.nodeIP, c.allocate, cfg.NodeIP, err, c.want)
		}
	}
}

// Every bad flag is an error naming it.
func TestConfigErrorsNameTheFlag(t *testing.T) {
	for flag, mod := range map[string]func(*Options){
		"--data-dir":        func(o *Options) { o.DataDir = "" },
		"--listen":          func(o *Options) { o.Listen = "6443" },
		"--store":           func(o *Options) { o.Store = "etcd3" },
		"--runtime":         func(o *Options) { o.Runtime = "docker" },
		"--proxy-mode":      func(o *Options) { o.ProxyMode = "ipvs" },
		"--dns-listen":      func(o *Options) { o.DNSListen = "localhost:53" },
		"--dns-pod-records": func(o *Options) { o.DNSPodRecords = "all" },
		"--cluster-domain":  func(o *Options) { o.ClusterDomain = ".local" },
		"--service-cidr":    func(o *Options) { o.ServiceCIDR = "198.19.0.0" },
		"--cluster-cidr":    func(o *Options) { o.ClusterCIDR = "x" },
		"--bridge":          func(o *Options) { o.Agent.Bridge = "a-bridge-name-too-long" },
		"--node-ip":         func(o *Options) { o.Agent.NodeIP = "machine-b" },
		"--allocate-node-cidrs": func(o *Options) {
			o.AllocateNodeCIDRs, o.ClusterCIDR = true, "198.18.0.0/25"
		},
	} {
		o := DefaultOptions()
		mod(&o)
		_, err := o.Config()
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s: got %v", flag, err)
		}
	}
}

func TestNormalizeDomain(t *testing.T) {
	for in, want := range map[string]string{
		"cluster.local": "cluster.local", "Cluster.Local.": "cluster.local", " corp.example ": "corp.example",
		"": "", ".": "", ".local": "", "a..b": "", "under_score.local": "",
	} {
		got, err := normalizeDomain(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("normalizeDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestIndexedAddr(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		index  int
		want   string
	}{
		{"198.19.0.0/16", 1, "198.19.0.1"},
		{"198.19.0.0/16", 10, "198.19.0.10"},
		{"198.19.1.7/24", 10, "198.19.1.10"},
		{"198.19.0.0/29", 10, ""},
		{"fd00::/64", 10, "fd00::a"},
	} {
		got, err := indexedAddr(netip.MustParsePrefix(tc.prefix), tc.index)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s[%d]: got %v, want an error", tc.prefix, tc.index, got)
			}
			continue
		}
		if err != nil || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s[%d] = %v, %v; want %s", tc.prefix, tc.index, got, err, tc.want)
		}
	}
}

// `headway server` and `headway dns` register the DNS flags with the same
// help and defaults.
func TestDNSFlagsShared(t *testing.T) {
	server := pflag.NewFlagSet("server", pflag.ContinueOnError)
	o := DefaultOptions()
	o.AddFlags(server)
	dnsFlags := pflag.NewFlagSet("dns", pflag.ContinueOnError)
	d := DefaultDNSOptions()
	d.AddFlags(dnsFlags)
	n := 0
	dnsFlags.VisitAll(func(f *pflag.Flag) {
		n++
		s := server.Lookup(f.Name)
		if s == nil || s.Usage != f.Usage || s.DefValue != f.DefValue {
			t.Errorf("--%s differs between headway server (%+v) and headway dns (%+v)", f.Name, s, f)
		}
	})
	if n != 7 || !strings.Contains(server.Lookup("dns-upstream").Usage, "none") {
		t.Fatalf("%d DNS flags; --dns-upstream: %s", n, server.Lookup("dns-upstream").Usage)
	}
}
