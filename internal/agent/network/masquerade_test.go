package network

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/agent/nsfile"
)

// TestIntervalElements: the set elements are what nft makes of the same
// prefixes (read with `nft --debug=netlink`).
func TestIntervalElements(t *testing.T) {
	for _, tc := range []struct {
		prefixes []string
		want     string
	}{
		{[]string{"198.18.250.0/24", "198.19.250.0/24"}, "end 0.0.0.0, 198.18.250.0, end 198.18.251.0, 198.19.250.0, end 198.19.251.0"},
		// Adjacent ranges merge (the defaults).
		{[]string{"198.18.0.0/16", "198.19.0.0/16"}, "end 0.0.0.0, 198.18.0.0, end 198.20.0.0"},
		{[]string{"198.19.0.0/16", "198.18.0.0/16"}, "end 0.0.0.0, 198.18.0.0, end 198.20.0.0"},
		// A range inside another disappears.
		{[]string{"198.18.0.0/15", "198.19.96.0/20"}, "end 0.0.0.0, 198.18.0.0, end 198.20.0.0"},
		// Unmasked prefixes count from their network.
		{[]string{"198.18.0.7/16"}, "end 0.0.0.0, 198.18.0.0, end 198.19.0.0"},
		// The edges of the address space.
		{[]string{"0.0.0.0/8", "255.0.0.0/8"}, "0.0.0.0, end 1.0.0.0, 255.0.0.0"},
	} {
		var ps []netip.Prefix
		for _, p := range tc.prefixes {
			ps = append(ps, netip.MustParsePrefix(p))
		}
		var got []string
		for _, e := range intervalElements(ps) {
			a, _ := netip.AddrFromSlice(e.Key)
			if e.IntervalEnd {
				got = append(got, "end "+a.String())
			} else {
				got = append(got, a.String())
			}
		}
		if s := strings.Join(got, ", "); s != tc.want {
			t.Errorf("%v: %s, want %s", tc.prefixes, s, tc.want)
		}
	}
}

// TestMasqueradeTable: in a network namespace of its own, the table is the
// ruleset the agent wrote with the nft command before, with the DNS
// address's traffic left out of conntrack; installing it again replaces
// it, and removing it leaves nothing.
func TestMasqueradeTable(t *testing.T) {
	needRoot(t)
	ns := filepath.Join(t.TempDir(), "ns")
	if err := nsfile.Create(ns, unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsfile.Remove(ns) })
	pods, svc := netip.MustParsePrefix("198.18.250.0/24"), netip.MustParsePrefix("198.19.250.0/24")
	dns := netip.MustParseAddr("198.19.250.10")
	const bridge = "hwt-masq"
	tables := func() []string {
		var names []string
		inNS(t, ns, func() {
			c, err := nftables.New()
			if err != nil {
				t.Error(err)
				return
			}
			ts, err := c.ListTables()
			if err != nil {
				t.Error(err)
			}
			for _, tb := range ts {
				names = append(names, tb.Name)
			}
		})
		return names
	}
	for range 2 {
		inNS(t, ns, func() {
			if err := installTable(bridge, nodeTable{masquerade: true, pods: pods, services: svc, dns: dns}); err != nil {
				t.Error(err)
			}
		})
	}
	if t.Failed() {
		t.FailNow()
	}
	if got := tables(); len(got) != 1 || got[0] != "headway-"+bridge {
		t.Fatalf("tables after installing twice: %v", got)
	}
	if nft, err := exec.LookPath("nft"); err == nil {
		out, err := exec.Command("nsenter", "--net="+ns, nft, "list", "table", "ip", "headway-"+bridge).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		want := fmt.Sprintf(`table ip headway-%[1]s {
	chain dns-prerouting {
		type filter hook prerouting priority raw; policy accept;
		ip daddr %[4]s meta l4proto { tcp, udp } th dport 53 notrack
	}

	chain dns-output {
		type filter hook output priority raw; policy accept;
		ip saddr %[4]s meta l4proto { tcp, udp } th sport 53 notrack
		ip daddr %[4]s meta l4proto { tcp, udp } th dport 53 notrack
	}

	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[2]s ip daddr != { %[2]s, %[3]s } oifname != "%[1]s" masquerade
	}
}`, bridge, pods, svc, dns)
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("nft list:\n%s\nwant:\n%s", got, want)
		}
	} else {
		t.Log("no nft command: the ruleset's text is not compared")
	}
	for range 2 {
		inNS(t, ns, func() {
			if err := removeTable(bridge); err != nil {
				t.Error(err)
			}
		})
	}
	if got := tables(); len(got) != 0 {
		t.Errorf("tables after removing: %v", got)
	}
}
