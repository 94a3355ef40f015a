// Package dns is Headway's cluster DNS server: the Kubernetes DNS-Based
// Service Discovery specification (schema 1.1.0) answered from an index that
// client-go informers keep current, served from tight UDP read loops and a
// simple TCP path, on the wire format of github.com/miekg/dns.
//
// The index is immutable, sharded and published atomically; queries never
// block on updates. It holds one node per Service (a stub over the
// model's records of the Service and its slices, service.go), per
// namespace, per pod record and per static name, and one owner entry per
// address with a PTR record. A Service's records, its _port._proto names,
// its endpoint names and the PTR records are built from those the first
// time a query asks for them, packed once, and reused until the Service
// changes: the index costs an endpoint no node, map entry or name string,
// and an endpoint's change costs the Service's slice list and the PTR
// entries of the addresses it changed, not the Service's endpoints.
//
// Two sides, as in CoreDNS' kubernetes plugin, meet only at the published
// Index:
//
// The informer side builds (builder.go): source.go turns informer
// notifications into events; convert.go turns Kubernetes objects into the
// model's records; model.go holds the cluster state and apply.go folds
// events into it; service.go builds the names one Service defines, following
// the naming rules of names.go; writer.go writes the next Index copy-on-write
// and index.go is the Index itself.
//
// The answering side only reads (handler.go): query.go parses a query,
// reply.go and answer.go write the answer, forward.go sends what is outside
// the cluster upstream, server.go is the UDP and TCP transport, and zone.go
// the zones both sides share.
package dns
