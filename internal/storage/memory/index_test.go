package memory

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// The chunked index agrees with a sorted slice through inserts and removes
// that split and empty chunks.
func TestKeyIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	var x keyIndex
	model := map[string]bool{}
	for step := range 20000 {
		key := fmt.Sprintf("k%05d", rng.IntN(3000))
		if rng.IntN(3) > 0 && !model[key] {
			x.insert(key)
			model[key] = true
		} else if model[key] {
			x.remove(key)
			delete(model, key)
		}
		if step%997 != 0 {
			continue
		}
		want := make([]string, 0, len(model))
		for k := range model {
			want = append(want, k)
		}
		sort.Strings(want)
		var got []string
		x.ascend("", func(k string) bool { got = append(got, k); return true })
		if !slices.Equal(got, want) || x.n != len(want) {
			t.Fatalf("step %d: index has %d keys (n=%d), model %d", step, len(got), x.n, len(want))
		}
		for _, c := range x.chunks {
			if len(c) == 0 || len(c) > maxChunk {
				t.Fatalf("step %d: chunk of %d keys", step, len(c))
			}
		}
		probe := fmt.Sprintf("k%05d", rng.IntN(3000))
		if r, w := x.rank(probe), sort.SearchStrings(want, probe); r != w {
			t.Fatalf("rank(%s) = %d, want %d", probe, r, w)
		}
		var from []string
		x.ascend(probe, func(k string) bool { from = append(from, k); return len(from) < 3 })
		w := want[sort.SearchStrings(want, probe):]
		if !slices.Equal(from, w[:min(3, len(w))]) {
			t.Fatalf("ascend(%s) = %v, want %v", probe, from, w[:min(3, len(w))])
		}
	}
	if len(x.chunks) < 2 {
		t.Fatalf("test never split a chunk (%d chunks)", len(x.chunks))
	}
}
