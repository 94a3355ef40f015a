package dns

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"k8s.io/client-go/kubernetes"
)

// action says what the transport does with a handled packet.
type action uint8

const (
	// actDrop: send nothing (not a query, or too short to answer).
	actDrop action = iota
	// actReply: send the returned bytes.
	actReply
	// actAsync: the answer needs the network (forwarding, or chasing a
	// CNAME outside the cluster); call Handler.async in a goroutine.
	actAsync
)

const (
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5
	rcodeBadVers  = 16
)

// Handler answers DNS queries from the Index last published to it. It
// never builds: the informer side (the builder, behind indexBuilder) folds
// cluster changes into a new immutable Index and publishes it; the handler
// only reads whichever Index is current. It is safe for concurrent use;
// each transport goroutine passes its own buffers.
type Handler struct {
	cfg     Config
	ttl     uint32
	zones   []*zone
	cluster *zone
	// clusterLabels is how many labels the cluster zone has.
	clusterLabels int
	idx           atomic.Pointer[Index]
	metrics       *Metrics
	fwd           *forwarder
	build         indexBuilder
	// synced is closed when the first synced index is published.
	synced     chan struct{}
	syncedOnce sync.Once
}

// indexBuilder is the informer side as the handler sees it: it keeps the
// cluster's names in an Index and publishes each new one to the handler.
type indexBuilder interface {
	// run follows the API behind client until ctx ends.
	run(ctx context.Context, client kubernetes.Interface) error
	// apply folds objects in directly, without informers, and marks the
	// index synced.
	apply(objs []any)
}

// New returns a Handler for cfg. Its index is empty and unsynced (in-zone
// queries get SERVFAIL) until Run has listed the cluster once.
func New(cfg Config) (*Handler, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m := cfg.Metrics
	if m == nil {
		m = DefaultMetrics()
	}
	h := &Handler{cfg: cfg, ttl: uint32(cfg.TTL / time.Second), metrics: m, synced: make(chan struct{})}
	h.zones = newZones(&h.cfg, h.ttl)
	h.cluster = h.zones[0]
	for off := 0; h.cluster.wire[off] != 0; off += 1 + int(h.cluster.wire[off]) {
		h.clusterLabels++
	}
	if len(cfg.Upstreams) > 0 {
		h.fwd = &forwarder{upstreams: cfg.Upstreams, allow: cfg.RecursionFrom, timeout: cfg.UpstreamTimeout, metrics: m}
	}
	h.build = newBuilder(&h.cfg, h.zones, m, h.publish)
	return h, nil
}

// publish makes ix the index every query from now on is answered from.
func (h *Handler) publish(ix *Index) {
	h.idx.Store(ix)
	if ix.synced {
		h.syncedOnce.Do(func() { close(h.synced) })
	}
}

// Synced is closed once the handler has listed the cluster (Run) or been
// given its objects (Apply): from then on it answers queries in its zones
// rather than SERVFAIL.
func (h *Handler) Synced() <-chan struct{} { return h.synced }

// Run keeps the index current from Services, EndpointSlices, Namespaces
// and (pod records mode verified) Pods of the API behind client, until ctx
// ends. It works against any Kubernetes API server.
func (h *Handler) Run(ctx context.Context, client kubernetes.Interface) error {
	return h.build.run(ctx, client)
}

// Apply folds Services, EndpointSlices, Namespaces and Pods into the index
// directly, without informers (tests and benchmarks); a nil object list
// entry is ignored. The index is marked synced.
func (h *Handler) Apply(objs ...any) { h.build.apply(objs) }

// serve answers one packet into out (at least 12 bytes of capacity; it
// grows as the answer needs); the returned bytes alias it when it fits.
func (h *Handler) serve(req, out []byte, src netip.Addr, udp bool) ([]byte, action) {
	var q query
	rc := parseQuery(req, &q)
	if rc < 0 {
		return nil, actDrop
	}
	if rc > 0 {
		return h.errorReply(req, &q, rc, out), actReply
	}
	return h.answer(req, &q, out, src, udp)
}

func (h *Handler) answer(req []byte, q *query, out []byte, src netip.Addr, udp bool) ([]byte, action) {
	if q.qclass != mdns.ClassINET {
		return h.reply(req, q, out, rcodeNotImp, false), actReply
	}
	ix := h.idx.Load()
	n := h.lookup(ix, q.keyBytes())
	var z *zone
	if n != nil {
		z = n.zone
	} else {
		z = h.zoneFor(q)
	}
	if z == nil || (n == nil && z.fallthrough_) {
		if h.fwd != nil && h.fwd.allowed(src) {
			return nil, actAsync
		}
		return h.reply(req, q, out, rcodeRefused, false), actReply
	}
	if !ix.synced {
		return h.reply(req, q, out, rcodeServFail, false), actReply
	}
	switch q.qtype {
	case mdns.TypeAXFR, mdns.TypeIXFR:
		return h.reply(req, q, out, rcodeRefused, false), actReply
	}
	if n == nil && h.cfg.PodMode == PodsInsecure && z == h.cluster {
		n = h.insecurePod(ix, q)
	}
	if n == nil {
		if q.qtype == mdns.TypeSOA {
			return h.negative(req, q, out, z, 0), actReply
		}
		return h.negative(req, q, out, z, rcodeNXDomain), actReply
	}
	if n.cname != "" && (q.qtype == mdns.TypeA || q.qtype == mdns.TypeAAAA || q.qtype == mdns.TypeTXT) {
		return nil, actAsync
	}
	slot := slotOf(q.qtype)
	if slot >= 0 && n.has(slot) {
		return h.positive(req, q, out, n, slot, udp), actReply
	}
	rcode := rcodeNXDomain
	switch {
	case q.qtype == mdns.TypeSOA:
		rcode = 0
	case q.qtype == mdns.TypeTXT:
		if n.flags&flagHasRecords != 0 {
			rcode = 0
		}
	case q.qtype == mdns.TypePTR && n.flags&flagPTRNX != 0:
	case n.flags&flagExists != 0:
		rcode = 0
	}
	return h.negative(req, q, out, z, rcode), actReply
}

// insecurePod answers a-b-c-d.<ns>.pod.<zone> for any address when the
// namespace exists (pod records mode insecure).
func (h *Handler) insecurePod(ix *Index, q *query) *node {
	if q.nlabels != h.clusterLabels+3 {
		return nil
	}
	key := q.keyBytes()
	podLabel := key[q.labels[2]:q.labels[3]]
	if string(podLabel) != "\x03pod" {
		return nil
	}
	if ix.get(key[q.labels[1]:]) == nil {
		return nil // namespace does not exist
	}
	label := string(key[q.labels[0]+1 : q.labels[1]])
	a, ok := podAddr(label)
	if !ok {
		return nil
	}
	name := mdns.CanonicalName(string(presentation(key)))
	n := &node{name: name, zone: h.cluster, flags: flagExists | flagHasRecords}
	if a.Is4() {
		n.a = []netip.Addr{a}
	} else {
		n.aaaa = []netip.Addr{a}
	}
	return n
}

// presentation is the text form of a wire name.
func presentation(key []byte) string {
	s, _, err := mdns.UnpackDomainName(key, 0)
	if err != nil {
		return "."
	}
	return s
}

// ServePacket answers one query packet as the server would over UDP (udp
// true) or TCP, from src; nil when the packet gets no answer. Answers that
// need the network (forwarding) are waited for.
func (h *Handler) ServePacket(ctx context.Context, req []byte, src netip.Addr, udp bool) []byte {
	out := make([]byte, 0, 65535)
	resp, act := h.serve(req, out, src, udp)
	switch act {
	case actReply:
		return resp
	case actAsync:
		return h.async(ctx, req, src, udp)
	}
	return nil
}
