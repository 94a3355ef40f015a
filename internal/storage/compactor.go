package storage

import (
	"context"
	"errors"
	"time"
)

// RunCompactor compacts s every interval to its current revision minus keep,
// when that is positive and newer than the revision already compacted to, so
// that roughly the last keep changes stay available to watches and lists at
// older revisions. It returns when ctx ends or the store is closed. A failed
// compaction is retried at the next tick. An interval <= 0 disables
// compaction: RunCompactor returns at once.
func RunCompactor(ctx context.Context, s Interface, interval time.Duration, keep int64) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		target := s.Revision() - keep
		if target <= 0 || target <= s.CompactedRevision() {
			continue
		}
		if err := s.Compact(ctx, target); errors.Is(err, ErrClosed) {
			return
		}
	}
}
