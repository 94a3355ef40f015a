package process

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// TestLogLinesAndRotation: output becomes CRI-format lines; past
// MaxLogSize the file is rotated to <file>.1 and a new one begun.
func TestLogLinesAndRotation(t *testing.T) {
	old := MaxLogSize
	MaxLogSize = 2000
	defer func() { MaxLogSize = old }()
	path := filepath.Join(t.TempDir(), "0.log")
	logf, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newStdio(&hwruntime.ContainerSpec{LogPath: path}, logf)
	if err != nil {
		t.Fatal(err)
	}
	s.start()
	for i := 0; i < 60; i++ { // about 2,800 bytes: one rotation
		fmt.Fprintf(s.childOut, "line %03d\n", i)
	}
	fmt.Fprint(s.childErr, "to stderr\n")
	s.closeChildEnds()
	<-s.done
	cur, _ := os.ReadFile(path)
	prev, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatalf("no rotated file: %v", err)
	}
	if len(cur) > 2000 || len(prev) > 2000 {
		t.Fatalf("files over the limit: %d and %d bytes", len(cur), len(prev))
	}
	all := string(prev) + string(cur)
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT[\d:.]+Z (stdout|stderr) F .*$`)
	for _, l := range strings.Split(strings.TrimSpace(string(cur)), "\n") {
		if !re.MatchString(l) {
			t.Fatalf("not a CRI log line: %q", l)
		}
	}
	if !strings.Contains(all, "stdout F line 059") || !strings.Contains(all, "stderr F to stderr") {
		t.Fatalf("the last lines are missing:\n%s", all)
	}
}
