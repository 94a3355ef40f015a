package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
)

// The probe: deleting the kubernetes and kube-dns Services left DNS
// answering NXDOMAIN for them until a restart. Now they come back within
// seconds, with their addresses, and DNS answers for them again.
func TestSystemServicesRecreated(t *testing.T) {
	c := cluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o := app.DefaultOptions()
	cfg, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"default/kubernetes": cfg.KubernetesIP.String(), "kube-system/kube-dns": cfg.DNSServiceIP.String()}
	lookup := func(name string) (int, []mdns.RR) {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		r, err := mdns.ExchangeContext(ctx, m, c.DNSAddr)
		if err != nil {
			return -1, nil
		}
		return r.Rcode, r.Answer
	}
	for key := range want {
		ns, name, _ := strings.Cut(key, "/")
		cluster.WaitFor(t, 10*time.Second, key+" to exist", func() (bool, error) {
			_, err := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			return err == nil, err
		})
		old, _ := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err := c.Client.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting %s: %v", key, err)
		}
		start := time.Now()
		cluster.WaitFor(t, 10*time.Second, key+" to be created again", func() (bool, error) {
			got, err := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, err
			}
			if err != nil {
				return false, err
			}
			if got.UID == old.UID || got.Spec.ClusterIP != want[key] {
				return false, nil
			}
			return true, nil
		})
		t.Logf("%s created again in %v", key, time.Since(start).Round(time.Millisecond))
		fqdn := name + "." + ns + ".svc.cluster.local."
		cluster.WaitFor(t, 10*time.Second, "DNS to answer "+fqdn, func() (bool, error) {
			rc, ans := lookup(fqdn)
			return rc == mdns.RcodeSuccess && len(ans) == 1 && ans[0].(*mdns.A).A.String() == want[key], nil
		})
	}
}

// A server whose DNS address is taken does not start: the error names the
// address and the flag to change.
func TestDNSAddressTakenStopsTheServer(t *testing.T) {
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	addr := udp.LocalAddr().String()
	_, err = cluster.StartE(t.TempDir(), func(o *app.Options) { o.DNSListen = addr })
	if err == nil {
		t.Fatalf("the server started with its DNS address %s taken", addr)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "--dns-listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("the error does not name the address and the fix: %v", err)
	}
}

// /readyz?verbose lists the DNS check beside the API server's own.
func TestReadyzListsDNS(t *testing.T) {
	c := cluster.Start(t)
	rt, err := rest.TransportFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "/readyz?verbose to list dns ok", func() (bool, error) {
		resp, err := (&http.Client{Transport: rt}).Get(c.URL + "/readyz?verbose")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && strings.Contains(string(b), "[+]dns ok\n") && strings.HasSuffix(string(b), "readyz check passed\n"), nil
	})
}
