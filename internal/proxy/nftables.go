package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table the proxy owns (family ip) unless
// Config.Table names another.
const TableName = "headway"

// nftBackend programs the table through netlink with google/nftables. It
// keeps what it applied per Service and sends only the difference, in one
// transaction per sync: the kernel switches from the old rules to the new
// ones atomically.
type nftBackend struct {
	conn  *nftables.Conn
	table *nftables.Table
	cfg   RulesConfig
	log   *slog.Logger

	// applied is what the kernel has, per Service key; desired is what it
	// should have.
	applied map[string]*serviceRules
	desired map[string]*serviceRules
	// full makes the next sync rewrite the whole table from desired (the
	// first one, and after a failure).
	full bool
}

// newNFT connects to nftables in the network namespace netnsFd (-1: ours).
func newNFT(netnsFd int, cfg RulesConfig, log *slog.Logger) (*nftBackend, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
	if netnsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("opening a netlink connection to nftables: %w", err)
	}
	b := &nftBackend{
		conn: conn, cfg: cfg, log: log, full: true,
		table:   &nftables.Table{Name: cfg.table(), Family: nftables.TableFamilyIPv4},
		applied: map[string]*serviceRules{}, desired: map[string]*serviceRules{},
	}
	if _, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("nftables is not usable here: %w", err)
	}
	return b, nil
}

// bigBuffers lets a whole table (thousands of chains) go in one
// transaction: a batch is one netlink message train the kernel reads at once.
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 256<<20); e != nil {
			serr = e
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	})
	if err != nil {
		return err
	}
	// A failure to enlarge them is not fatal: small syncs still fit.
	_ = serr
	return nil
}

func (b *nftBackend) name() string { return "nftables" }

// Apply makes the table match: changes maps Service keys to their ports
// (nil: the Service is gone or gets nothing).
func (b *nftBackend) Apply(changes map[string][]ServicePort) error {
	for k, ports := range changes {
		r := compileService(ports, b.cfg)
		if r.empty() {
			delete(b.desired, k)
		} else {
			b.desired[k] = r
		}
	}
	if b.full {
		if err := b.fullSync(); err != nil {
			return err
		}
		b.full = false
		b.applied = maps.Clone(b.desired)
		return nil
	}
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	if err := b.incremental(keys); err != nil {
		b.full = true // the table may not be what we think: rewrite it next time
		return err
	}
	for _, k := range keys {
		if r, ok := b.desired[k]; ok {
			b.applied[k] = r
		} else {
			delete(b.applied, k)
		}
	}
	return nil
}

// Objects of the table.

func (b *nftBackend) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: b.table}
}

func (b *nftBackend) baseChain(c baseChain) *nftables.Chain {
	ch := b.chain(c.name)
	if c.hook == "" {
		return ch
	}
	ch.Type = nftables.ChainTypeFilter
	if c.kind == "nat" {
		ch.Type = nftables.ChainTypeNAT
	}
	switch c.hook {
	case "prerouting":
		ch.Hooknum = nftables.ChainHookPrerouting
	case "input":
		ch.Hooknum = nftables.ChainHookInput
	case "forward":
		ch.Hooknum = nftables.ChainHookForward
	case "output":
		ch.Hooknum = nftables.ChainHookOutput
	case "postrouting":
		ch.Hooknum = nftables.ChainHookPostrouting
	}
	ch.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.priority))
	return ch
}

var (
	svcIPKeyType   = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	nodePortKeyTyp = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
)

// fixedMaps are the four verdict maps.
func (b *nftBackend) fixedMaps() []*nftables.Set {
	mk := func(name string, kt nftables.SetDatatype) *nftables.Set {
		return &nftables.Set{Table: b.table, Name: name, IsMap: true, Concatenation: true, KeyType: kt, DataType: nftables.TypeVerdict}
	}
	return []*nftables.Set{
		mk(mapServiceIPs, svcIPKeyType), mk(mapNoEndpointSvcs, svcIPKeyType),
		mk(mapNodePorts, nodePortKeyTyp), mk(mapNoEndpointNPorts, nodePortKeyTyp),
	}
}

func (b *nftBackend) mapRef(name string) *nftables.Set {
	for _, m := range b.fixedMaps() {
		if m.Name == name {
			return m
		}
	}
	panic("no map " + name)
}

func (b *nftBackend) affinitySetObj(name string, timeout time.Duration) *nftables.Set {
	return &nftables.Set{Table: b.table, Name: name, KeyType: nftables.TypeIPAddr, HasTimeout: true, Dynamic: true, Timeout: timeout}
}

// addRules queues the rules of a chain.
func (b *nftBackend) addRules(ch *nftables.Chain, rules []rule) error {
	for _, ru := range rules {
		ex := ru.exprs
		if ru.spread != nil {
			set := &nftables.Set{Table: b.table, Anonymous: true, Constant: true, IsMap: true,
				KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian}
			elems := make([]nftables.SetElement, len(ru.spread))
			for i, t := range ru.spread {
				elems[i] = nftables.SetElement{Key: nativeUint32(uint32(i)), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: t}}
			}
			if err := b.conn.AddSet(set, elems); err != nil {
				return err
			}
			ex = spreadExprs(len(ru.spread), set)
		}
		b.conn.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: ex})
	}
	return nil
}

// nativeUint32: numgen writes its result in host byte order.
func nativeUint32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

func gotoElem(key []byte, chain string) nftables.SetElement {
	return nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}
}

// elements queues element additions or deletions in chunks (a netlink
// attribute holds at most 64 KiB).
func (b *nftBackend) elements(set *nftables.Set, elems []nftables.SetElement, del bool) error {
	for len(elems) > 0 {
		n := min(len(elems), 256)
		var err error
		if del {
			err = b.conn.SetDeleteElements(set, elems[:n])
		} else {
			err = b.conn.SetAddElements(set, elems[:n])
		}
		if err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

// mapElems gathers the four maps' elements of a set of services.
type mapElems map[string][]nftables.SetElement

func (m mapElems) addIP(name string, k svcIPKey, chain string) {
	m[name] = append(m[name], gotoElem(k.bytes(), chain))
}

func (m mapElems) addNP(name string, k nodePortKey, chain string) {
	m[name] = append(m[name], gotoElem(k.bytes(), chain))
}

// diffElems adds to add/del what turns old's map entries into new's.
func diffElems(old, new *serviceRules, add, del mapElems) {
	if old == nil {
		old = newServiceRules()
	}
	if new == nil {
		new = newServiceRules()
	}
	for k, c := range old.serviceIPs {
		if new.serviceIPs[k] != c {
			del.addIP(mapServiceIPs, k, c)
		}
	}
	for k, c := range new.serviceIPs {
		if old.serviceIPs[k] != c {
			add.addIP(mapServiceIPs, k, c)
		}
	}
	for k, c := range old.nodePorts {
		if new.nodePorts[k] != c {
			del.addNP(mapNodePorts, k, c)
		}
	}
	for k, c := range new.nodePorts {
		if old.nodePorts[k] != c {
			add.addNP(mapNodePorts, k, c)
		}
	}
	for k := range old.noEndpoints {
		if !new.noEndpoints[k] {
			del.addIP(mapNoEndpointSvcs, k, chainReject)
		}
	}
	for k := range new.noEndpoints {
		if !old.noEndpoints[k] {
			add.addIP(mapNoEndpointSvcs, k, chainReject)
		}
	}
	for k := range old.noEndpointNodePorts {
		if !new.noEndpointNodePorts[k] {
			del.addNP(mapNoEndpointNPorts, k, chainReject)
		}
	}
	for k := range new.noEndpointNodePorts {
		if !old.noEndpointNodePorts[k] {
			add.addNP(mapNoEndpointNPorts, k, chainReject)
		}
	}
}

func sameRules(a, b []rule) bool {
	return slices.EqualFunc(a, b, func(x, y rule) bool { return x.text == y.text })
}

// svcChainsFirst orders chain names for deletion: a svc- chain refers to
// ep- chains, so it goes first.
func svcChainsFirst(names []string) {
	slices.SortFunc(names, func(a, b string) int {
		as, bs := strings.HasPrefix(a, svcChainPrefix), strings.HasPrefix(b, svcChainPrefix)
		switch {
		case as && !bs:
			return -1
		case bs && !as:
			return 1
		}
		return strings.Compare(a, b)
	})
}

// incremental applies the changes of the given Services in one transaction.
func (b *nftBackend) incremental(keys []string) error {
	add, del := mapElems{}, mapElems{}
	var delChains []string
	var delSets []string
	type chainRules struct {
		name  string
		rules []rule
		flush bool
	}
	var writes []chainRules
	// Phase 1: new sets and chains.
	for _, k := range keys {
		old, new := b.applied[k], b.desired[k]
		if old == nil {
			old = newServiceRules()
		}
		if new == nil {
			new = newServiceRules()
		}
		for name, t := range new.affinity {
			if _, ok := old.affinity[name]; !ok {
				if err := b.conn.AddSet(b.affinitySetObj(name, t), nil); err != nil {
					return err
				}
			}
		}
		for name, rules := range new.chains {
			oldRules, had := old.chains[name]
			switch {
			case !had:
				b.conn.AddChain(b.chain(name))
				writes = append(writes, chainRules{name: name, rules: rules})
			case !sameRules(oldRules, rules):
				writes = append(writes, chainRules{name: name, rules: rules, flush: true})
			}
		}
		for name := range old.chains {
			if _, ok := new.chains[name]; !ok {
				delChains = append(delChains, name)
			}
		}
		for name := range old.affinity {
			if _, ok := new.affinity[name]; !ok {
				delSets = append(delSets, name)
			}
		}
		diffElems(old, new, add, del)
	}
	// Phase 2: rules (chains referenced now all exist).
	for _, w := range writes {
		ch := b.chain(w.name)
		if w.flush {
			b.conn.FlushChain(ch)
		}
		if err := b.addRules(ch, w.rules); err != nil {
			return err
		}
	}
	// Phase 3: map elements, removals before additions.
	for _, name := range slices.Sorted(maps.Keys(del)) {
		if err := b.elements(b.mapRef(name), del[name], true); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(add)) {
		if err := b.elements(b.mapRef(name), add[name], false); err != nil {
			return err
		}
	}
	// Phase 4: what nothing refers to any more.
	svcChainsFirst(delChains)
	for _, name := range delChains {
		b.conn.DelChain(b.chain(name))
	}
	for _, name := range delSets {
		b.conn.DelSet(&nftables.Set{Table: b.table, Name: name})
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nftables transaction: %w", err)
	}
	return nil
}

// fullSync rewrites the whole table from desired in one transaction,
// adopting a table a previous run left: chains and maps are flushed and
// refilled in the same transaction, so traffic to unchanged Services sees
// no gap, and ClientIP affinity sets that are still wanted keep their
// entries.
func (b *nftBackend) fullSync() error {
	existingChains := map[string]bool{}
	existingSets := map[string]bool{}
	if _, err := b.conn.ListTableOfFamily(b.table.Name, nftables.TableFamilyIPv4); err == nil {
		chains, err := b.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return fmt.Errorf("listing chains: %w", err)
		}
		for _, c := range chains {
			if c.Table.Name == b.table.Name {
				existingChains[c.Name] = true
			}
		}
		sets, err := b.conn.GetSets(b.table)
		if err != nil {
			return fmt.Errorf("listing sets: %w", err)
		}
		for _, s := range sets {
			if !s.Anonymous && !strings.HasPrefix(s.Name, "__") {
				existingSets[s.Name] = true
			}
		}
	}
	if len(existingChains) > 0 {
		b.log.Info("adopting the nftables table a previous run left", "table", b.table.Name, "chains", len(existingChains))
	}
	err := b.writeAll(existingChains, existingSets)
	if err != nil && len(existingChains)+len(existingSets) > 0 {
		// The old table does not fit (another version's layout): start
		// from an empty one. Traffic to services pauses for this one sync.
		b.log.Warn("the existing nftables table cannot be adopted; recreating it", "table", b.table.Name, "err", err)
		b.conn.DelTable(b.table)
		if derr := b.conn.Flush(); derr != nil {
			return fmt.Errorf("%w; and removing the table: %v", err, derr)
		}
		err = b.writeAll(nil, nil)
	}
	return err
}

func (b *nftBackend) writeAll(existingChains, existingSets map[string]bool) error {
	b.conn.AddTable(b.table)
	for name := range existingChains {
		b.conn.FlushChain(b.chain(name))
	}
	for _, m := range b.fixedMaps() {
		if err := b.conn.AddSet(m, nil); err != nil {
			return err
		}
		if existingSets[m.Name] {
			b.conn.FlushSet(m)
		}
	}
	wantSets := map[string]bool{}
	wantChains := map[string]bool{}
	add := mapElems{}
	for _, k := range slices.Sorted(maps.Keys(b.desired)) {
		r := b.desired[k]
		for name, t := range r.affinity {
			wantSets[name] = true
			if err := b.conn.AddSet(b.affinitySetObj(name, t), nil); err != nil {
				return err
			}
		}
		for name := range r.chains {
			wantChains[name] = true
			b.conn.AddChain(b.chain(name))
		}
		diffElems(nil, r, add, mapElems{})
	}
	base := baseChains(b.cfg)
	for _, c := range base {
		wantChains[c.name] = true
		b.conn.AddChain(b.baseChain(c))
	}
	for _, c := range base {
		if err := b.addRules(b.chain(c.name), c.rules); err != nil {
			return err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b.desired)) {
		for name, rules := range b.desired[k].chains {
			if err := b.addRules(b.chain(name), rules); err != nil {
				return err
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(add)) {
		if err := b.elements(b.mapRef(name), add[name], false); err != nil {
			return err
		}
	}
	var stale []string
	for name := range existingChains {
		if !wantChains[name] {
			stale = append(stale, name)
		}
	}
	svcChainsFirst(stale)
	for _, name := range stale {
		b.conn.DelChain(b.chain(name))
	}
	for name := range existingSets {
		if !wantSets[name] && !slices.ContainsFunc(b.fixedMaps(), func(s *nftables.Set) bool { return s.Name == name }) {
			b.conn.DelSet(&nftables.Set{Table: b.table, Name: name})
		}
	}
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("nftables transaction: %w", err)
	}
	return nil
}

// Cleanup removes the table.
func (b *nftBackend) Cleanup() error {
	defer b.conn.CloseLasting()
	if _, err := b.conn.ListTableOfFamily(b.table.Name, nftables.TableFamilyIPv4); err != nil {
		return nil // already gone
	}
	b.conn.DelTable(b.table)
	if err := b.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing nftables table %s: %w", b.table.Name, err)
	}
	return nil
}

// Close lets go of the connection and leaves the rules in place.
func (b *nftBackend) Close() { b.conn.CloseLasting() }
