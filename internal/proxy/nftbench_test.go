package proxy

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// BenchmarkNFTApply measures the nftables backend alone in a namespace of
// its own: a full sync of -services, then single-service updates.
func BenchmarkNFTApply(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates a network namespace and programs nftables in it")
	}
	name := fmt.Sprintf("hwpxb%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	b.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns := NetNS{Path: "/var/run/netns/" + name}
	fd, err := ns.open()
	if err != nil {
		b.Fatal(err)
	}
	defer closeFd(fd)
	be, err := newNFT(fd, RulesConfig{PodCIDR: netip.MustParsePrefix("198.18.0.0/16")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	sp := func(i, gen int) []ServicePort {
		p := ServicePort{Namespace: "default", Name: fmt.Sprintf("svc%d", i), Protocol: corev1.ProtocolTCP,
			ClusterIP: netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(2 + i%250)}), Port: 80}
		for j := range 10 {
			p.Endpoints = append(p.Endpoints, Endpoint{IP: netip.AddrFrom4([4]byte{198, 18, byte(10 + (i*10+j)/250), byte(2 + (i*10+j)%250)}), Port: uint16(8080 + gen%2)})
		}
		return []ServicePort{p}
	}
	all := map[string][]ServicePort{}
	for i := range 1000 {
		all[fmt.Sprintf("default/svc%d", i)] = sp(i, 0)
	}
	if err := be.Apply(all); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for n := range b.N {
		i := n % 1000
		if err := be.Apply(map[string][]ServicePort{fmt.Sprintf("default/svc%d", i): sp(i, n+1)}); err != nil {
			b.Fatal(err)
		}
	}
}
