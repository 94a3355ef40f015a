package proxy_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/headway/headway/internal/proxy"
)

// TestServiceRouteIsTheProxys: the proxy routes the service range locally
// even in mode none (no Service rules), adopts a route a previous run left
// and removes it when it stops.
func TestServiceRouteIsTheProxys(t *testing.T) {
	l := newLab(t)
	node := l.name + "-node"
	route := func() string {
		out, err := exec.Command("ip", "-n", node, "route", "show", "table", "local", labCfg.ServiceCIDR.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("ip route show: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	waitRoute := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for (route() != "") != want {
			if time.Now().After(deadline) {
				t.Fatalf("service route present: %v, want %v (%q)", !want, want, route())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, left := range []bool{false, true} {
		if left {
			run(t, "ip", "-n", node, "route", "add", "local", labCfg.ServiceCIDR.String(), "dev", "lo", "table", "local")
		}
		_, stop := startProxy(t, nil, l, proxy.ModeNone, false)
		waitRoute(true)
		stop()
		if r := route(); r != "" {
			t.Errorf("route left (left by an earlier run: %v) after the proxy stopped: %s", left, r)
		}
	}
}
