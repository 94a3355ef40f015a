package dns

import (
	"net/netip"
	"sync/atomic"
	"time"
)

const shardBits = 8
const nShards = 1 << shardBits

// Index is one immutable snapshot of every name the cluster defines. A new
// snapshot shares the shards an update did not touch with the previous one;
// queries read whichever snapshot was published when they arrived.
type Index struct {
	shards [nShards]*shard
	// ptrs: the addresses Services give PTR records, sharded like the
	// names; their records are built from the owners' sources on first use.
	ptrs [nShards]*ptrShard
	// synced is false until every informer has listed once: until then
	// in-zone queries get SERVFAIL rather than a false NXDOMAIN.
	synced bool
	// names is how many names the index holds (a Service's endpoint and
	// port names counted as the addresses and ports they stand for).
	names int
}

type shard struct {
	m map[string]*node // lower-case wire name → node
}

type ptrShard struct {
	m map[netip.Addr]*ptrEntry
}

// shardOf picks the shard of a lower-case wire name (FNV-1a).
func shardOf(key []byte) int {
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h & (nShards - 1))
}

func shardOfString(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h & (nShards - 1))
}

func (ix *Index) get(key []byte) *node {
	s := ix.shards[shardOf(key)]
	if s == nil {
		return nil
	}
	return s.m[string(key)]
}

func (ix *Index) getString(key string) *node {
	s := ix.shards[shardOfString(key)]
	if s == nil {
		return nil
	}
	return s.m[key]
}

func shardOfAddr(a netip.Addr) int {
	b := a.As16()
	h := uint32(2166136261)
	for _, c := range b[8:] {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h & (nShards - 1))
}

func (ix *Index) ptr(a netip.Addr) *ptrEntry {
	s := ix.ptrs[shardOfAddr(a)]
	if s == nil {
		return nil
	}
	return s.m[a]
}

// Node flags: how a name answers the types it holds no records of. They
// follow CoreDNS' kubernetes plugin, so that either server gives a client
// the same NXDOMAIN/NODATA answers.
const (
	// flagExists: NODATA (not NXDOMAIN) for types without records.
	flagExists uint8 = 1 << iota
	// flagHasRecords: TXT queries get NODATA (else NXDOMAIN).
	flagHasRecords
	// flagPTRNX: PTR queries get NXDOMAIN even though the name exists
	// (ns.dns.<zone>).
	flagPTRNX
	// flagApex: the zone apex (SOA and NS records).
	flagApex
)

// Answer slots: the packed positive answers a node can have.
const (
	slotA = iota
	slotAAAA
	slotSRV
	slotPTR
	slotTXT
	slotCNAME
	slotNS
	slotSOA
	nSlots
)

func slotOf(qtype uint16) int {
	switch qtype {
	case 1:
		return slotA
	case 28:
		return slotAAAA
	case 33:
		return slotSRV
	case 12:
		return slotPTR
	case 16:
		return slotTXT
	case 5:
		return slotCNAME
	case 2:
		return slotNS
	case 6:
		return slotSOA
	}
	return -1
}

type srvRecord struct {
	target string // lower-case FQDN
	port   uint16
	weight uint16
}

type addrRecord struct {
	name string // lower-case FQDN
	addr netip.Addr
}

// node is one name and everything it answers. Its record fields never change
// after publication; packed answers are filled in on first use.
type node struct {
	name  string // lower-case FQDN
	zone  *zone
	flags uint8
	a     []netip.Addr
	aaaa  []netip.Addr
	srv   []srvRecord
	extra []addrRecord // additional section of SRV answers
	ptr   []string
	cname string
	txt   string
	ns    []addrRecord // apex: name server names and addresses

	packed [nSlots]atomic.Pointer[[]byte]
	trunc  [nSlots]atomic.Pointer[truncated]
	change *changeMark

	// svc: a Service's name as the index holds it, a stub whose records,
	// endpoint names and port names are built from the Service and its
	// slices the first time they are asked for (service.go).
	svc *svcNames
}

type truncated struct {
	limit int
	data  []byte
}

// changeMark ties the nodes built for one change to the time the change was
// made, so that the first answer carrying it records the DNS programming
// latency once.
type changeMark struct {
	at   time.Time
	done atomic.Bool
}

func (n *node) has(slot int) bool {
	switch slot {
	case slotA:
		return len(n.a) > 0
	case slotAAAA:
		return len(n.aaaa) > 0
	case slotSRV:
		return len(n.srv) > 0
	case slotPTR:
		return len(n.ptr) > 0
	case slotTXT:
		return n.txt != ""
	case slotCNAME:
		return n.cname != ""
	case slotNS:
		return len(n.ns) > 0
	case slotSOA:
		return n.flags&flagApex != 0
	}
	return false
}
