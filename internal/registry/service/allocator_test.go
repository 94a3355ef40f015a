package service

import (
	"errors"
	"net/netip"
	"testing"
)

func TestIPAllocatorExhaustsAndReleases(t *testing.T) {
	a, err := NewIPAllocator(netip.MustParsePrefix("198.19.0.0/29"))
	if err != nil {
		t.Fatal(err)
	}
	// /29: 8 addresses, minus network and broadcast = 6, minus the reserved first = 5.
	got := map[netip.Addr]bool{}
	for i := 0; i < 5; i++ {
		ip, err := a.Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if got[ip] || ip == a.KubernetesIP() || ip == netip.MustParseAddr("198.19.0.7") || ip == netip.MustParseAddr("198.19.0.0") {
			t.Fatalf("bad address %s (have %v)", ip, got)
		}
		got[ip] = true
	}
	if _, err := a.Allocate(); !errors.Is(err, ErrFull) {
		t.Fatalf("full range: %v", err)
	}
	if err := a.AllocateSpecific(a.KubernetesIP()); err != nil {
		t.Fatalf("the reserved address can be asked for by name: %v", err)
	}
	if err := a.AllocateSpecific(netip.MustParseAddr("198.19.1.1")); !errors.Is(err, ErrNotInRange) {
		t.Fatalf("out of range: %v", err)
	}
	for ip := range got {
		if err := a.AllocateSpecific(ip); !errors.Is(err, ErrAllocated) {
			t.Fatalf("taken: %v", err)
		}
		a.Release(ip)
		if err := a.AllocateSpecific(ip); err != nil {
			t.Fatalf("released address not reusable: %v", err)
		}
		break
	}
}

func TestPortAllocator(t *testing.T) {
	p := NewPortAllocator(30000, 3)
	seen := map[int]bool{}
	for i := 0; i < 3; i++ {
		port, err := p.Allocate()
		if err != nil || seen[port] || port < 30000 || port > 30002 {
			t.Fatalf("port %d err %v", port, err)
		}
		seen[port] = true
	}
	if _, err := p.Allocate(); !errors.Is(err, ErrFull) {
		t.Fatal(err)
	}
	if err := p.AllocateSpecific(40000); !errors.Is(err, ErrPortNotRange) {
		t.Fatal(err)
	}
}
