package headwaytest_test

import (
	"testing"

	"github.com/headway/headway/pkg/headwaytest"
)

// BenchmarkStart starts and stops clusters one after another (the first
// start of the process, which builds what later ones share, is outside the
// timer); it reports the median of StartedIn besides ns/op.
func BenchmarkStart(b *testing.B) {
	first, err := headwaytest.StartE(headwaytest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := first.Stop(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		c, err := headwaytest.StartE(headwaytest.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
