package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/headway/headway/internal/storage"
)

// Allocation errors.
var (
	ErrFull         = errors.New("range is full")
	ErrAllocated    = errors.New("provided IP is already allocated")
	ErrNotInRange   = errors.New("provided IP is not in the valid range")
	ErrPortTaken    = errors.New("provided port is already allocated")
	ErrPortNotRange = errors.New("provided port is not in the valid range")
)

// Where the reservations live in the store: one key per held address or
// port, created only if absent, so that several API servers on one store
// never hand out the same one.
const (
	IPReservationPrefix   = "/headway/allocations/serviceips/"
	PortReservationPrefix = "/headway/allocations/nodeports/"
)

// reservations hands out ordinals of a range as store keys. The store is
// authoritative (a key created if absent is held, by whichever server made
// it); used is this server's hint of what is held, so that a free ordinal
// is usually found with one write. Store I/O happens outside mu.
type reservations struct {
	store  storage.Interface
	prefix string
	size   uint64 // ordinals [0, size)
	skip   uint64 // ordinals [0, skip) are only given by name
	key    func(n uint64) string
	parse  func(suffix string) (uint64, bool)

	mu     sync.Mutex
	used   map[uint64]bool
	synced bool // restore has read the store
}

func (r *reservations) reserve(ctx context.Context, n uint64, owner string) error {
	r.mu.Lock()
	r.used[n] = true
	r.mu.Unlock()
	_, err := r.store.Create(ctx, r.prefix+r.key(n), []byte(owner))
	if err != nil && !errors.Is(err, storage.ErrKeyExists) {
		r.mu.Lock()
		delete(r.used, n)
		r.mu.Unlock()
	}
	return err
}

// allocate reserves a free ordinal at or above skip, starting at a random one.
func (r *reservations) allocate(ctx context.Context, owner string) (uint64, error) {
	span := r.size - r.skip
	if r.size <= r.skip {
		return 0, ErrFull
	}
	for pass := 0; pass < 2; pass++ {
		start := rand.Uint64N(span)
		for i := uint64(0); i < span; i++ {
			n := r.skip + (start+i)%span
			r.mu.Lock()
			held := r.used[n]
			r.mu.Unlock()
			if held {
				continue
			}
			err := r.reserve(ctx, n, owner)
			if err == nil {
				return n, nil
			}
			if !errors.Is(err, storage.ErrKeyExists) {
				return 0, err
			}
			// Another server holds it; the hint now says so too.
		}
		// The hint may hold what other servers released: read the store.
		if err := r.resync(ctx); err != nil {
			return 0, err
		}
	}
	return 0, ErrFull
}

// take reserves ordinal n; storage.ErrKeyExists when it is held.
func (r *reservations) take(ctx context.Context, n uint64, owner string) error {
	return r.reserve(ctx, n, owner)
}

// restore makes sure n is reserved (rebuilding from stored Services): the
// first call reads the reservations, so that only missing ones are written.
func (r *reservations) restore(ctx context.Context, n uint64, owner string) error {
	r.mu.Lock()
	synced := r.synced
	r.mu.Unlock()
	if !synced {
		if err := r.resync(ctx); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.synced = true
	held := r.used[n]
	r.mu.Unlock()
	if held {
		return nil
	}
	if err := r.reserve(ctx, n, owner); err != nil && !errors.Is(err, storage.ErrKeyExists) {
		return err
	}
	return nil
}

func (r *reservations) release(ctx context.Context, n uint64) error {
	_, _, err := r.store.Delete(ctx, r.prefix+r.key(n), 0)
	r.mu.Lock()
	delete(r.used, n)
	r.mu.Unlock()
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// resync replaces the hint with the reservations in the store.
func (r *reservations) resync(ctx context.Context) error {
	used := map[uint64]bool{}
	start := ""
	for {
		page, err := r.store.List(ctx, r.prefix, storage.ListOptions{Limit: 1000, StartKey: start})
		if err != nil {
			return err
		}
		for _, kv := range page.Items {
			if n, ok := r.parse(strings.TrimPrefix(kv.Key, r.prefix)); ok {
				used[n] = true
			}
		}
		if !page.More || len(page.Items) == 0 {
			break
		}
		start = page.Items[len(page.Items)-1].Key + "\x00"
	}
	r.mu.Lock()
	r.used = used
	r.mu.Unlock()
	return nil
}

func (r *reservations) count(ctx context.Context) (int, error) {
	if err := r.resync(ctx); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.used), nil
}

// IPAllocator hands out Service cluster IPs from a CIDR: never one that is
// held, released on delete. The network address and the broadcast address
// are never handed out; the first address is reserved for the kubernetes
// Service (it is only given when asked for by name).
type IPAllocator struct {
	prefix netip.Prefix
	first  netip.Addr
	r      *reservations
}

// NewIPAllocator returns an allocator for cidr (IPv4) whose reservations
// are keys of store.
func NewIPAllocator(cidr netip.Prefix, store storage.Interface) (*IPAllocator, error) {
	cidr = cidr.Masked()
	if !cidr.Addr().Is4() || cidr.Bits() > 30 {
		return nil, fmt.Errorf("service CIDR %s: want an IPv4 range of /30 or larger", cidr)
	}
	a := &IPAllocator{prefix: cidr, first: cidr.Addr().Next()}
	a.r = &reservations{
		store: store, prefix: IPReservationPrefix,
		size: uint64(1)<<(32-cidr.Bits()) - 2, skip: 1,
		key: func(n uint64) string { return a.nth(n).String() },
		parse: func(s string) (uint64, bool) {
			ip, err := netip.ParseAddr(s)
			if err != nil || !a.contains(ip) {
				return 0, false
			}
			return uint64(u32(ip) - u32(a.first)), true
		},
		used: map[uint64]bool{},
	}
	return a, nil
}

func u32(ip netip.Addr) uint32 {
	b := ip.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// KubernetesIP is the first address of the range, the kubernetes Service's.
func (a *IPAllocator) KubernetesIP() netip.Addr { return a.first }

func (a *IPAllocator) nth(n uint64) netip.Addr {
	v := u32(a.first) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (a *IPAllocator) ordinal(ip netip.Addr) uint64 { return uint64(u32(ip) - u32(a.first)) }

// Allocate reserves a free address (never the reserved first one) for
// owner (namespace/name).
func (a *IPAllocator) Allocate(ctx context.Context, owner string) (netip.Addr, error) {
	n, err := a.r.allocate(ctx, owner)
	if err != nil {
		return netip.Addr{}, err
	}
	return a.nth(n), nil
}

// AllocateSpecific reserves ip if it is in range and free.
func (a *IPAllocator) AllocateSpecific(ctx context.Context, ip netip.Addr, owner string) error {
	if !a.contains(ip) {
		return ErrNotInRange
	}
	err := a.r.take(ctx, a.ordinal(ip), owner)
	if errors.Is(err, storage.ErrKeyExists) {
		return ErrAllocated
	}
	return err
}

func (a *IPAllocator) contains(ip netip.Addr) bool {
	if !ip.Is4() || !a.prefix.Contains(ip) || ip == a.prefix.Addr() {
		return false
	}
	return ip.Compare(a.nth(a.r.size-1)) <= 0
}

// Restore makes sure ip is reserved (rebuilding state from stored Services).
func (a *IPAllocator) Restore(ctx context.Context, ip netip.Addr, owner string) error {
	if !a.contains(ip) {
		return nil
	}
	return a.r.restore(ctx, a.ordinal(ip), owner)
}

// Release frees ip.
func (a *IPAllocator) Release(ctx context.Context, ip netip.Addr) error {
	if !a.contains(ip) {
		return nil
	}
	return a.r.release(ctx, a.ordinal(ip))
}

// Used returns how many addresses are held (read from the store).
func (a *IPAllocator) Used(ctx context.Context) (int, error) { return a.r.count(ctx) }

// PortAllocator hands out node ports from a range.
type PortAllocator struct {
	base, size int
	r          *reservations
}

// NewPortAllocator returns an allocator for [base, base+size) whose
// reservations are keys of store.
func NewPortAllocator(base, size int, store storage.Interface) *PortAllocator {
	p := &PortAllocator{base: base, size: size}
	p.r = &reservations{
		store: store, prefix: PortReservationPrefix, size: uint64(size),
		key: func(n uint64) string { return strconv.Itoa(base + int(n)) },
		parse: func(s string) (uint64, bool) {
			port, err := strconv.Atoi(s)
			if err != nil || port < base || port >= base+size {
				return 0, false
			}
			return uint64(port - base), true
		},
		used: map[uint64]bool{},
	}
	return p
}

func (p *PortAllocator) inRange(port int) bool { return port >= p.base && port < p.base+p.size }

// Allocate reserves a free port for owner.
func (p *PortAllocator) Allocate(ctx context.Context, owner string) (int, error) {
	n, err := p.r.allocate(ctx, owner)
	if err != nil {
		return 0, err
	}
	return p.base + int(n), nil
}

// AllocateSpecific reserves port if it is in range and free.
func (p *PortAllocator) AllocateSpecific(ctx context.Context, port int, owner string) error {
	if !p.inRange(port) {
		return ErrPortNotRange
	}
	err := p.r.take(ctx, uint64(port-p.base), owner)
	if errors.Is(err, storage.ErrKeyExists) {
		return ErrPortTaken
	}
	return err
}

// Restore makes sure port is reserved.
func (p *PortAllocator) Restore(ctx context.Context, port int, owner string) error {
	if !p.inRange(port) {
		return nil
	}
	return p.r.restore(ctx, uint64(port-p.base), owner)
}

// Release frees port.
func (p *PortAllocator) Release(ctx context.Context, port int) error {
	if !p.inRange(port) {
		return nil
	}
	return p.r.release(ctx, uint64(port-p.base))
}
