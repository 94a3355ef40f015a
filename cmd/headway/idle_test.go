package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFileKB is this process's RssFile (mapped file pages) in KiB.
func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseStartupMemory: releasing drops most of the executable's mapped
// pages, and the process keeps running its code and reading its data (the
// pages come back from the file as they are used).
func TestReleaseStartupMemory(t *testing.T) {
	before := rssFileKB(t)
	released := releaseStartupMemory()
	after := rssFileKB(t)
	if released <= 0 {
		t.Fatalf("released %d bytes of the executable's mappings", released)
	}
	if after >= before {
		t.Errorf("RssFile %d KiB before, %d KiB after releasing", before, after)
	}
	t.Logf("RssFile %d KiB before, %d KiB after releasing %d MiB of mappings", before, after, released>>20)
	// Code and read-only data still work: the command tree's help and the
	// version text come from both.
	var out strings.Builder
	root := newRootCommand()
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "kubernetes v1.") {
		t.Fatalf("headway version after releasing: %v %q", err, out.String())
	}
}
