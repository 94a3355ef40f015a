package dns

import (
	"net/netip"
	"sort"
)

// model is the builder's mutable view of the cluster: the records
// converted from every object (convert.go), indexed the ways apply needs.
// Only the builder's goroutine touches it; readers only ever see the Index
// it publishes.
type model struct {
	cfg      *Config
	zone     *zone   // the cluster zone
	zones    []*zone // every zone, cluster zone first, then reverse zones, then fallthrough zones
	cur      *Index
	synced   bool
	kubeDNS  []netip.Addr
	ns       map[string]bool
	svcs     map[string]*svcInfo
	svcsByNS map[string]map[string]bool
	slices   map[string]*sliceInfo            // ns/slice
	bySvc    map[string]map[string]*sliceInfo // ns/svc → ns/slice → slice
	owned    map[string]string                // ns/svc → wire key of its name
	pods     map[string]podInfo               // ns/name → pod
	podNames map[string]map[string]int        // wire key → ns/pod → index of the address
}

// newModel returns the model of an empty cluster over zones (newZones):
// its index holds the static names only and is not synced.
func newModel(cfg *Config, zones []*zone) *model {
	m := &model{
		cfg:      cfg,
		zone:     zones[0],
		zones:    zones,
		cur:      &Index{},
		ns:       map[string]bool{},
		svcs:     map[string]*svcInfo{},
		svcsByNS: map[string]map[string]bool{},
		slices:   map[string]*sliceInfo{},
		bySvc:    map[string]map[string]*sliceInfo{},
		owned:    map[string]string{},
		pods:     map[string]podInfo{},
		podNames: map[string]map[string]int{},
	}
	w := newWriter(m.cur)
	m.writeStatic(w)
	m.cur = w.finish(false)
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
