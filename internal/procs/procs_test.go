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
		got, users := SpareForSyncs()
		again, _ := SpareForSyncs()
		os.Stdout.WriteString(strconv.Itoa(before) + " " + strconv.Itoa(got) + " " + strconv.Itoa(again) + " " + strconv.FormatBool(users) + "\n")
		return
	}
	run := func(env ...string) ([]int, bool) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestSpareForSyncs$")
		cmd.Env = append(os.Environ(), append([]string{"PROCS_CHILD=1"}, env...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		fields := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
		if len(fields) != 4 {
			t.Fatalf("child printed %q", out)
		}
		users, err := strconv.ParseBool(fields[3])
		if err != nil {
			t.Fatalf("child printed %q", out)
		}
		var n []int
		for _, f := range fields[:3] {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("child printed %q", out)
			}
			n = append(n, v)
		}
		return n, users
	}
	if n, users := run("GOMAXPROCS="); n[1] != n[0]+1 || n[2] != n[1] || users {
		t.Errorf("without GOMAXPROCS set: before %d, after %d, after a second call %d, the user's %v; want one more, once, not the user's", n[0], n[1], n[2], users)
	}
	if n, users := run("GOMAXPROCS=3"); n[0] != 3 || n[1] != 3 || n[2] != 3 || !users {
		t.Errorf("with GOMAXPROCS=3: %v, the user's %v; the user's value must stay", n, users)
	}
}
