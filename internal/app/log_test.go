package app

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestKlogVerbosity: the Kubernetes libraries' records come out at debug
// level; their verbose ones (V above 4, as slog levels below debug) only
// with a level below debug.
func TestKlogVerbosity(t *testing.T) {
	for _, tc := range []struct {
		level string
		want  map[slog.Level]bool
	}{
		{"info", map[slog.Level]bool{slog.LevelError: false, 0: false, -4: false, -8: false}},
		{"debug", map[slog.Level]bool{slog.LevelError: true, 0: true, -2: true, -4: true, -5: false, -8: false}},
		{"debug-4", map[slog.Level]bool{slog.LevelError: true, -4: true, -8: true, -10: false}},
	} {
		var l slog.Level
		if err := l.UnmarshalText([]byte(tc.level)); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		h := debugHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: l})}
		for lv, want := range tc.want {
			buf.Reset()
			if got := h.Enabled(context.Background(), lv); got != want {
				t.Errorf("--log-level %s: record at %v enabled %v, want %v", tc.level, lv, got, want)
			}
			slog.New(h).Log(context.Background(), lv, "m")
			if out := buf.String(); (out != "") != want || (want && !strings.Contains(out, "level=DEBUG")) {
				t.Errorf("--log-level %s: record at %v wrote %q", tc.level, lv, out)
			}
		}
	}
}
