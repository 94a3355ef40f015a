// Package storage defines Headway's revisioned key-value store with watch.
//
// Every write advances one global revision (like etcd's). Each key records the
// revision that created it and the revision of its last modification. The
// API server maps ModRevision to an object's resourceVersion.
//
// Backends: storage/bolt (embedded default, durable), storage/memory
// (tests and throwaway clusters). storagetest is the conformance suite that
// every backend must pass.
package storage

import (
	"context"
	"errors"
)

// Errors returned by every backend. Callers compare with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrKeyExists: Create on a key that exists.
	ErrKeyExists = errors.New("storage: key already exists")
	// ErrConflict: a guarded Update/Delete whose expected revision is not the key's ModRevision.
	ErrConflict = errors.New("storage: revision conflict")
	// ErrCompacted: the requested revision is older than the oldest revision still kept.
	ErrCompacted = errors.New("storage: revision has been compacted")
	// ErrFutureRevision: the requested revision is newer than the current revision.
	ErrFutureRevision = errors.New("storage: revision is in the future")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("storage: closed")
)

// KV is one stored key.
type KV struct {
	Key            string
	Value          []byte
	CreateRevision int64
	ModRevision    int64
}

// EventType says what happened to a key.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return "UNKNOWN"
}

// Event is one change, as delivered by Watch. Events are delivered in strictly
// increasing Revision order.
type Event struct {
	Type EventType
	// KV is the key after the change. For a delete, KV.Value is the value
	// before the delete and KV.ModRevision is the revision of the delete.
	KV KV
	// PrevValue is the value before the change (nil for a create).
	PrevValue []byte
	// Revision is the revision this change produced.
	Revision int64
	// Created is true when a put created the key.
	Created bool
}

// ListOptions select a page of keys under a prefix.
type ListOptions struct {
	// Limit is the maximum number of keys returned; 0 means no limit.
	Limit int64
	// StartKey, when set, is where the page starts (inclusive); it must have
	// the prefix. Used to continue a paginated list.
	StartKey string
	// Revision, when non-zero, lists the state as of that revision: ErrCompacted
	// if it is older than the compacted revision, ErrFutureRevision if newer
	// than the current one.
	Revision int64
}

// ListResult is one page.
type ListResult struct {
	Items []KV
	// Revision is the revision the page was read at.
	Revision int64
	// More is true when keys after the last returned one remain.
	More bool
	// Remaining is the number of keys after this page (when More).
	Remaining int64
}

// Interface is what every backend implements. All methods are safe for
// concurrent use. Writes are serialized into one global revision order; a
// write has been made durable (by the backend's standard) when it returns.
type Interface interface {
	// Create stores a new key. ErrKeyExists if it exists. Returns the new revision.
	Create(ctx context.Context, key string, value []byte) (int64, error)
	// Get returns a key. ErrNotFound if absent.
	Get(ctx context.Context, key string) (KV, error)
	// List returns keys with the prefix in lexical order.
	List(ctx context.Context, prefix string, opts ListOptions) (ListResult, error)
	// Update replaces a key's value if its ModRevision equals expectedRevision
	// (0 means unconditional). ErrNotFound if absent, ErrConflict if the
	// revision does not match. Returns the new revision.
	Update(ctx context.Context, key string, value []byte, expectedRevision int64) (int64, error)
	// Delete removes a key if its ModRevision equals expectedRevision (0 means
	// unconditional). Returns the deleted KV (value before delete) and the
	// revision of the delete.
	Delete(ctx context.Context, key string, expectedRevision int64) (KV, int64, error)
	// Watch streams changes to keys with the prefix made after fromRevision
	// (exclusive). fromRevision 0 means "from now". ErrCompacted if
	// fromRevision is older than the compacted revision. The channel is closed
	// when ctx ends, the store closes, or the watcher falls too far behind
	// (the caller then re-lists). Events arrive in increasing revision order.
	Watch(ctx context.Context, prefix string, fromRevision int64) (<-chan Event, error)
	// Compact forgets history up to and including revision: later watches or
	// lists from revisions <= it get ErrCompacted.
	Compact(ctx context.Context, revision int64) error
	// Revision returns the current revision (of the last write).
	Revision() int64
	// CompactedRevision returns the revision history has been compacted to.
	CompactedRevision() int64
	// Close releases the store. Open watches are closed.
	Close() error
}
