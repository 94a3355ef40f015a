package procs

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The test runs itself in a child process: GOMAXPROCS is process-wide.
func TestSpareForSyncs(t *testing.T) {
	if os.Getenv("PROCS_CHILD") != "" {
		before := runtime.GOMAXPROCS(0)
		got, again := SpareForSyncs(), SpareForSyncs()
		os.Stdout.WriteString(strconv.Itoa(before) + " " + strconv.Itoa(got) + " " + strconv.Itoa(again) + "\n")
		return
	}
	run := func(env ...string) []int {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSpareForSyncs$")
		cmd.Env = append(os.Environ(), append([]string{"PROCS_CHILD=1"}, env...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		var n []int
		for _, f := range strings.Fields(strings.SplitN(string(out), "\n", 2)[0]) {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("child printed %q", out)
			}
			n = append(n, v)
		}
		if len(n) != 3 {
			t.Fatalf("child printed %q", out)
		}
		return n
	}
	if n := run("GOMAXPROCS="); n[1] != n[0]+1 || n[2] != n[1] {
		t.Errorf("without GOMAXPROCS set: before %d, after %d, after a second call %d; want one more, once", n[0], n[1], n[2])
	}
	if n := run("GOMAXPROCS=3"); n[0] != 3 || n[1] != 3 || n[2] != 3 {
		t.Errorf("with GOMAXPROCS=3: %v; the user's value must stay", n)
	}
}
