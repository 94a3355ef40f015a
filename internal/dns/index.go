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
	// synced is false until every informer has listed once: until then
	// in-zone queries get SERVFAIL rather than a false NXDOMAIN.
	synced bool
	// names is how many names the index holds.
	names int
}

type shard struct {
	m map[string]*node // lower-case wire name → node
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
