package service

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
)

// Allocation errors.
var (
	ErrFull         = errors.New("range is full")
	ErrAllocated    = errors.New("provided IP is already allocated")
	ErrNotInRange   = errors.New("provided IP is not in the valid range")
	ErrPortTaken    = errors.New("provided port is already allocated")
	ErrPortNotRange = errors.New("provided port is not in the valid range")
)

// IPAllocator hands out Service cluster IPs from a CIDR: never one that is
// held, released on delete. The network address and the broadcast address
// are never handed out; the first address is reserved for the kubernetes
// Service (it is only given when asked for by name).
type IPAllocator struct {
	mu     sync.Mutex
	prefix netip.Prefix
	first  netip.Addr
	size   uint64
	used   map[netip.Addr]bool
}

// NewIPAllocator returns an allocator for cidr (IPv4).
func NewIPAllocator(cidr netip.Prefix) (*IPAllocator, error) {
	cidr = cidr.Masked()
	if !cidr.Addr().Is4() || cidr.Bits() > 30 {
		return nil, fmt.Errorf("service CIDR %s: want an IPv4 range of /30 or larger", cidr)
	}
	size := uint64(1)<<(32-cidr.Bits()) - 2
	return &IPAllocator{prefix: cidr, first: cidr.Addr().Next(), size: size, used: map[netip.Addr]bool{}}, nil
}

// KubernetesIP is the first address of the range, the kubernetes Service's.
func (a *IPAllocator) KubernetesIP() netip.Addr { return a.first }

func (a *IPAllocator) nth(n uint64) netip.Addr {
	b := a.first.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Allocate returns a free address (never the reserved first one).
func (a *IPAllocator) Allocate() (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.size <= 1 {
		return netip.Addr{}, ErrFull
	}
	start := 1 + rand.Uint64N(a.size-1)
	for i := uint64(0); i < a.size-1; i++ {
		n := 1 + (start-1+i)%(a.size-1)
		ip := a.nth(n)
		if !a.used[ip] {
			a.used[ip] = true
			return ip, nil
		}
	}
	return netip.Addr{}, ErrFull
}

// AllocateSpecific takes ip if it is in range and free.
func (a *IPAllocator) AllocateSpecific(ip netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.contains(ip) {
		return ErrNotInRange
	}
	if a.used[ip] {
		return ErrAllocated
	}
	a.used[ip] = true
	return nil
}

func (a *IPAllocator) contains(ip netip.Addr) bool {
	if !a.prefix.Contains(ip) || ip == a.prefix.Addr() {
		return false
	}
	last := a.nth(a.size - 1)
	return ip.Compare(last) <= 0
}

// Restore marks ip as held (rebuilding state from stored Services).
func (a *IPAllocator) Restore(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.contains(ip) {
		a.used[ip] = true
	}
}

// Release frees ip.
func (a *IPAllocator) Release(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.used, ip)
}

// Used returns how many addresses are held.
func (a *IPAllocator) Used() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.used)
}

// PortAllocator hands out node ports from a range.
type PortAllocator struct {
	mu         sync.Mutex
	base, size int
	used       map[int]bool
}

// NewPortAllocator returns an allocator for [base, base+size).
func NewPortAllocator(base, size int) *PortAllocator {
	return &PortAllocator{base: base, size: size, used: map[int]bool{}}
}

// Allocate returns a free port.
func (p *PortAllocator) Allocate() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := rand.IntN(p.size)
	for i := 0; i < p.size; i++ {
		port := p.base + (start+i)%p.size
		if !p.used[port] {
			p.used[port] = true
			return port, nil
		}
	}
	return 0, ErrFull
}

// AllocateSpecific takes port if it is in range and free.
func (p *PortAllocator) AllocateSpecific(port int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if port < p.base || port >= p.base+p.size {
		return ErrPortNotRange
	}
	if p.used[port] {
		return ErrPortTaken
	}
	p.used[port] = true
	return nil
}

// Restore marks port as held.
func (p *PortAllocator) Restore(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if port >= p.base && port < p.base+p.size {
		p.used[port] = true
	}
}

// Release frees port.
func (p *PortAllocator) Release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, port)
}
