package storage

import (
	"slices"
	"strings"
)

// Helpers shared by the backends: key ranges for List, and rewinding the
// current state through the event log to list at an older revision.

// PrefixEnd returns the smallest key greater than every key with the prefix,
// or "" when there is none (the prefix is empty or all 0xff bytes).
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// KeyRange returns the key range [start, end) that a List of the prefix
// starting at startKey covers; end "" means no upper bound. ok is false when
// the range is empty (startKey is past every key with the prefix).
func KeyRange(prefix, startKey string) (start, end string, ok bool) {
	start, end = prefix, PrefixEnd(prefix)
	if startKey > start {
		start = startKey
	}
	if end != "" && start >= end {
		return start, end, false
	}
	return start, end, true
}

// InRange reports whether start <= key < end (end "" meaning no upper bound).
func InRange(key, start, end string) bool {
	return key >= start && (end == "" || key < end)
}

// Change is a logged event together with the ModRevision the key had before
// it, which is what undoing the event needs.
type Change struct {
	Event
	PrevModRevision int64
}

// Undo reverts the change in state, a map of key to KV holding the state as
// of the change's revision; afterwards it holds the state as of the revision
// before it.
func (c *Change) Undo(state map[string]KV) {
	key := c.KV.Key
	switch {
	case c.Type == EventPut && c.Created:
		delete(state, key)
	case c.Type == EventPut:
		state[key] = KV{Key: key, Value: c.PrevValue, CreateRevision: c.KV.CreateRevision, ModRevision: c.PrevModRevision}
	case c.Type == EventDelete:
		state[key] = KV{Key: key, Value: c.KV.Value, CreateRevision: c.KV.CreateRevision, ModRevision: c.PrevModRevision}
	}
}

// PageOf returns the first limit keys of state in lexical order (all of them
// when limit <= 0) as a page read at revision rev.
func PageOf(state map[string]KV, limit, rev int64) ListResult {
	items := make([]KV, 0, len(state))
	for _, kv := range state {
		items = append(items, kv)
	}
	slices.SortFunc(items, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	res := ListResult{Revision: rev}
	if limit > 0 && int64(len(items)) > limit {
		res.More = true
		res.Remaining = int64(len(items)) - limit
		items = items[:limit]
	}
	res.Items = items
	return res
}
