package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/memory"
)

func newStore(t *testing.T) storage.Interface {
	s := memory.New()
	t.Cleanup(func() { s.Close() })
	return s
}

func TestIPAllocatorExhaustsAndReleases(t *testing.T) {
	ctx := context.Background()
	a, err := NewIPAllocator(netip.MustParsePrefix("198.19.0.0/29"), newStore(t))
	if err != nil {
		t.Fatal(err)
	}
	// /29: 8 addresses, minus network and broadcast = 6, minus the reserved first = 5.
	got := map[netip.Addr]bool{}
	for i := 0; i < 5; i++ {
		ip, err := a.Allocate(ctx, "default/s")
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if got[ip] || ip == a.KubernetesIP() || ip == netip.MustParseAddr("198.19.0.7") || ip == netip.MustParseAddr("198.19.0.0") {
			t.Fatalf("bad address %s (have %v)", ip, got)
		}
		got[ip] = true
	}
	if _, err := a.Allocate(ctx, "default/s"); !errors.Is(err, ErrFull) {
		t.Fatalf("full range: %v", err)
	}
	if err := a.AllocateSpecific(ctx, a.KubernetesIP(), "default/kubernetes"); err != nil {
		t.Fatalf("the reserved address can be asked for by name: %v", err)
	}
	if err := a.AllocateSpecific(ctx, netip.MustParseAddr("198.19.1.1"), "default/s"); !errors.Is(err, ErrNotInRange) {
		t.Fatalf("out of range: %v", err)
	}
	for ip := range got {
		if err := a.AllocateSpecific(ctx, ip, "default/s"); !errors.Is(err, ErrAllocated) {
			t.Fatalf("taken: %v", err)
		}
		if err := a.Release(ctx, ip); err != nil {
			t.Fatal(err)
		}
		if err := a.AllocateSpecific(ctx, ip, "default/s"); err != nil {
			t.Fatalf("released address not reusable: %v", err)
		}
		break
	}
	if n, err := a.Used(ctx); err != nil || n != 6 {
		t.Fatalf("used: %d %v, want 6", n, err)
	}
}

func TestPortAllocator(t *testing.T) {
	ctx := context.Background()
	p := NewPortAllocator(30000, 3, newStore(t))
	seen := map[int]bool{}
	for i := 0; i < 3; i++ {
		port, err := p.Allocate(ctx, "default/s")
		if err != nil || seen[port] || port < 30000 || port > 30002 {
			t.Fatalf("port %d err %v", port, err)
		}
		seen[port] = true
	}
	if _, err := p.Allocate(ctx, "default/s"); !errors.Is(err, ErrFull) {
		t.Fatal(err)
	}
	if err := p.AllocateSpecific(ctx, 40000, "default/s"); !errors.Is(err, ErrPortNotRange) {
		t.Fatal(err)
	}
	if err := p.AllocateSpecific(ctx, 30001, "default/s"); !errors.Is(err, ErrPortTaken) {
		t.Fatal(err)
	}
}

// TestAllocatorsShareTheStore: two allocators on one store (two API
// servers) allocating concurrently never hand out the same address, and
// what one releases the other can hand out once its range looks full.
func TestAllocatorsShareTheStore(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	cidr := netip.MustParsePrefix("198.19.0.0/25") // 125 to hand out
	a, _ := NewIPAllocator(cidr, store)
	b, _ := NewIPAllocator(cidr, store)
	var mu sync.Mutex
	owners := map[netip.Addr]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for w := 0; w < 10; w++ {
		alloc := a
		if w%2 == 1 {
			alloc = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				name := fmt.Sprintf("w%d", w)
				ip, err := alloc.Allocate(ctx, name)
				if errors.Is(err, ErrFull) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := owners[ip]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("%s handed to %s and %s", ip, prev, name)
					return
				}
				owners[ip] = name
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(owners) != 125 {
		t.Fatalf("handed out %d addresses, want all 125", len(owners))
	}
	// b releases one; a, whose hint says everything is held, finds it.
	var freed netip.Addr
	for ip := range owners {
		freed = ip
		break
	}
	if err := b.Release(ctx, freed); err != nil {
		t.Fatal(err)
	}
	got, err := a.Allocate(ctx, "again")
	if err != nil || got != freed {
		t.Fatalf("after b released %s, a allocated %s, %v", freed, got, err)
	}
}

// TestRestoreReservesWhatServicesHold: addresses and ports of stored
// Services (a store written before reservations were keys) are reserved
// at start, so no other allocator hands them out.
func TestRestoreReservesWhatServicesHold(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	cidr := netip.MustParsePrefix("198.19.0.0/29")
	a, _ := NewIPAllocator(cidr, store)
	held := []netip.Addr{netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.3")}
	for _, ip := range held {
		if err := a.Restore(ctx, ip, "default/old"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Restore(ctx, held[0], "default/old"); err != nil {
		t.Fatalf("restoring twice: %v", err)
	}
	p := NewPortAllocator(30000, 3, store)
	if err := p.Restore(ctx, 30001, "default/old"); err != nil {
		t.Fatal(err)
	}
	b, _ := NewIPAllocator(cidr, store)
	for _, ip := range held {
		if err := b.AllocateSpecific(ctx, ip, "default/new"); !errors.Is(err, ErrAllocated) {
			t.Fatalf("restored %s: %v, want ErrAllocated", ip, err)
		}
	}
	if err := NewPortAllocator(30000, 3, store).AllocateSpecific(ctx, 30001, "default/new"); !errors.Is(err, ErrPortTaken) {
		t.Fatalf("restored port: %v", err)
	}
}
