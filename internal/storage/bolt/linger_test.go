package bolt

import (
	"testing"
	"time"
)

func TestLinger(t *testing.T) {
	for _, c := range []struct {
		size        int
		took, limit time.Duration
		want        time.Duration
	}{
		{0, time.Millisecond, DefaultMaxLinger, 0}, // the first commit
		{1, time.Millisecond, DefaultMaxLinger, 0}, // a lone writer never waits
		{2, 600 * time.Microsecond, DefaultMaxLinger, 300 * time.Microsecond},
		{16, 10 * time.Millisecond, DefaultMaxLinger, DefaultMaxLinger}, // a slow disk: capped
		{16, 10 * time.Millisecond, 0, 0},                               // MaxLinger < 0 (stored as 0)
	} {
		if got := linger(c.size, c.took, c.limit); got != c.want {
			t.Errorf("linger(%d, %v, %v) = %v, want %v", c.size, c.took, c.limit, got, c.want)
		}
	}
}
