package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"sync"

	"github.com/headway/headway/internal/atomicfile"
)

// IPAM hands out pod addresses from a range and remembers them in a file, so
// an address is never given to two pods, also across restarts, and a pod
// that is started again gets the address it had.
type IPAM struct {
	mu      sync.Mutex
	path    string
	prefix  netip.Prefix
	gateway netip.Addr
	byOwner map[string]netip.Addr
	byAddr  map[netip.Addr]string
	// byName is the address each pod name (namespace/name) had last, so a
	// pod made again under its name (a StatefulSet's) gets it back while
	// it is free.
	byName map[string]netip.Addr
	last   netip.Addr
	// gen counts the changes made in memory (under mu). A change is on
	// disk once saved reaches its gen: saves run one at a time (saveMu) and
	// each writes everything changed so far, so pods started together
	// share one fsync instead of waiting for one each under mu.
	gen    uint64
	saveMu sync.Mutex
	saved  uint64 // under saveMu
}

// ErrRangeFull is returned when every address of the range is in use.
var ErrRangeFull = errors.New("no free pod address left")

type ipamFile struct {
	// Allocations maps an address to its owner (a pod UID).
	Allocations map[string]string `json:"allocations"`
	// Last is the address handed out last; the next search starts after
	// it, so a released address is not reused at once.
	Last string `json:"last,omitempty"`
	// Names maps a pod name (namespace/name) to the address it had last.
	Names map[string]string `json:"names,omitempty"`
}

// OpenIPAM loads (or starts) the allocations kept in path for prefix; the
// gateway address is never handed out.
func OpenIPAM(path string, prefix netip.Prefix, gateway netip.Addr) (*IPAM, error) {
	if !prefix.Addr().Is4() || prefix.Bits() > 30 {
		return nil, fmt.Errorf("pod range %s: want an IPv4 range of at least 4 addresses", prefix)
	}
	m := &IPAM{path: path, prefix: prefix.Masked(), gateway: gateway,
		byOwner: map[string]netip.Addr{}, byAddr: map[netip.Addr]string{}, byName: map[string]netip.Addr{}}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, err
	}
	var f ipamFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("reading pod address allocations %s: %w", path, err)
	}
	for a, owner := range f.Allocations {
		addr, err := netip.ParseAddr(a)
		if err != nil || !m.prefix.Contains(addr) {
			continue // another range than before: forget it
		}
		m.byAddr[addr] = owner
		m.byOwner[owner] = addr
	}
	for name, a := range f.Names {
		if addr, err := netip.ParseAddr(a); err == nil && m.prefix.Contains(addr) {
			m.byName[name] = addr
		}
	}
	if l, err := netip.ParseAddr(f.Last); err == nil && m.prefix.Contains(l) {
		m.last = l
	}
	return m, nil
}

// Allocate returns owner's address, handing out a new one if it has none.
func (m *IPAM) Allocate(owner string) (netip.Addr, error) { return m.AllocateNamed(owner, "") }

// AllocateNamed is Allocate for a pod named name (namespace/name): a new
// owner under a name that had an address gets that address again when it
// is free (a StatefulSet's pod keeps its IP when it is made again).
func (m *IPAM) AllocateNamed(owner, name string) (netip.Addr, error) {
	m.mu.Lock()
	before := m.gen
	a, err := m.allocateLocked(owner, name)
	gen := m.gen
	m.mu.Unlock()
	if err != nil {
		return netip.Addr{}, err
	}
	if err := m.persist(gen); err != nil {
		m.mu.Lock()
		if gen != before && m.byOwner[owner] == a { // this call's allocation
			delete(m.byAddr, a)
			delete(m.byOwner, owner)
			m.gen++
		}
		m.mu.Unlock()
		return netip.Addr{}, err
	}
	return a, nil
}

// allocateLocked is AllocateNamed in memory; the caller persists m.gen.
func (m *IPAM) allocateLocked(owner, name string) (netip.Addr, error) {
	if a, ok := m.byOwner[owner]; ok {
		return a, nil
	}
	if a, ok := m.byName[name]; ok && name != "" {
		if _, used := m.byAddr[a]; !used && a != m.gateway {
			return a, m.takeLocked(owner, name, a)
		}
	}
	first := m.prefix.Addr().Next()
	start := first
	if m.last.IsValid() {
		start = m.last.Next()
	}
	a := start
	for {
		if !m.prefix.Contains(a) || isBroadcast(m.prefix, a) {
			a = first
		}
		if _, used := m.byAddr[a]; !used && a != m.gateway {
			break
		}
		a = a.Next()
		if a == start {
			return netip.Addr{}, fmt.Errorf("%w in %s", ErrRangeFull, m.prefix)
		}
	}
	m.last = a
	return a, m.takeLocked(owner, name, a)
}

// takeLocked records a as owner's (in memory, a new gen).
func (m *IPAM) takeLocked(owner, name string, a netip.Addr) error {
	m.byAddr[a], m.byOwner[owner] = owner, a
	for n, old := range m.byName {
		if old == a && n != name {
			delete(m.byName, n) // the address serves another name now
		}
	}
	if name != "" {
		m.byName[name] = a
	}
	m.gen++
	return nil
}

// Lookup returns owner's address, if it has one.
func (m *IPAM) Lookup(owner string) (netip.Addr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.byOwner[owner]
	return a, ok
}

// Release frees owner's address.
func (m *IPAM) Release(owner string) error {
	m.mu.Lock()
	a, ok := m.byOwner[owner]
	if !ok {
		m.mu.Unlock()
		return nil
	}
	delete(m.byOwner, owner)
	delete(m.byAddr, a)
	m.gen++
	gen := m.gen
	m.mu.Unlock()
	return m.persist(gen)
}

// persist returns once the allocations of gen (or a later one) are on
// disk, writing them if no save has yet.
func (m *IPAM) persist(gen uint64) error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	if m.saved >= gen {
		return nil
	}
	m.mu.Lock()
	data, err := m.encodeLocked()
	now := m.gen
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(m.path, data, 0o600); err != nil {
		return err
	}
	m.saved = now
	return nil
}

// Owners lists the owners that hold an address.
func (m *IPAM) Owners() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.byOwner))
	for o := range m.byOwner {
		out = append(out, o)
	}
	sort.Strings(out)
	return out
}

func isBroadcast(p netip.Prefix, a netip.Addr) bool {
	b := a.As4()
	host := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	mask := uint32(1)<<host - 1
	return v&mask == mask
}

func (m *IPAM) encodeLocked() ([]byte, error) {
	f := ipamFile{Allocations: make(map[string]string, len(m.byAddr))}
	for a, o := range m.byAddr {
		f.Allocations[a.String()] = o
	}
	if m.last.IsValid() {
		f.Last = m.last.String()
	}
	if len(m.byName) > 0 {
		f.Names = make(map[string]string, len(m.byName))
		for n, a := range m.byName {
			f.Names[n] = a.String()
		}
	}
	return json.MarshalIndent(f, "", "  ")
}
