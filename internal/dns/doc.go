// Package dns is Headway's cluster DNS server: the Kubernetes DNS-Based
// Service Discovery specification (schema 1.1.0) answered from an index that
// client-go informers keep current, served from tight UDP read loops and a
// simple TCP path, on the wire format of github.com/miekg/dns.
//
// All work happens when the cluster changes: every name the cluster defines
// is a node in an immutable, sharded index published atomically; a node's
// packed answers are built once, the first time they are asked for, and
// reused until the node is replaced. Queries never block on updates.
//
// Two sides, as in CoreDNS' kubernetes plugin, meet only at the published
// Index:
//
// The informer side builds (builder.go): source.go turns informer
// notifications into events; convert.go turns Kubernetes objects into the
// model's records; model.go holds the cluster state and apply.go folds
// events into it; records.go gives the names one Service defines, following
// the naming rules of names.go; writer.go writes the next Index copy-on-write
// and index.go is the Index itself.
//
// The answering side only reads (handler.go): query.go parses a query,
// reply.go and answer.go write the answer, forward.go sends what is outside
// the cluster upstream, server.go is the UDP and TCP transport, and zone.go
// the zones both sides share.
package dns
