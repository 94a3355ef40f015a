package initbin

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

func use(t *testing.T, data []byte, digest string) {
	t.Helper()
	oldFiles, oldSum := files, SHA256
	t.Cleanup(func() { files, SHA256 = oldFiles, oldSum })
	files = fstest.MapFS{"bin/" + Name: {Data: data}}
	SHA256 = digest
}

func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// The embedded init is installed when its digest matches the stamp, once:
// an identical file already there is left as it is.
func TestInstallWritesTheStampedBinaryOnce(t *testing.T) {
	data := []byte("\x7fELF not really, but bytes to install")
	use(t, data, digest(data))
	dir := filepath.Join(t.TempDir(), "bin")
	path, err := Install(dir)
	if err != nil || path != filepath.Join(dir, Name) {
		t.Fatalf("Install = %q, %v; want %s", path, err, filepath.Join(dir, Name))
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != string(data) {
		t.Fatalf("installed %q (%v), want %q", got, err, data)
	}
	st1, _ := os.Stat(path)
	if st1.Mode().Perm() != 0o500 {
		t.Errorf("mode %v, want 0500", st1.Mode().Perm())
	}
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(path)
	if !os.SameFile(st1, st2) {
		t.Error("an identical installed file was written again")
	}
	// A different file at the path (another build's) is replaced.
	os.Chmod(path, 0o700)
	os.WriteFile(path, []byte("old"), 0o700)
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(data) {
		t.Errorf("after Install over another file: %q", got)
	}
}

// Without the stamp (a plain go build), with a stamp of other bytes, or with
// no embedded file, nothing is installed and the agent runs itself.
func TestInstallNeedsAMatchingStamp(t *testing.T) {
	data := []byte("init bytes")
	for name, tc := range map[string]struct {
		files  fstest.MapFS
		digest string
	}{
		"no stamp":       {fstest.MapFS{"bin/" + Name: {Data: data}}, ""},
		"another digest": {fstest.MapFS{"bin/" + Name: {Data: data}}, digest([]byte("other bytes"))},
		"no such file":   {fstest.MapFS{"bin/README.md": {Data: []byte("x")}}, digest(data)},
	} {
		t.Run(name, func(t *testing.T) {
			oldFiles, oldSum := files, SHA256
			t.Cleanup(func() { files, SHA256 = oldFiles, oldSum })
			files, SHA256 = tc.files, tc.digest
			dir := filepath.Join(t.TempDir(), "bin")
			path, err := Install(dir)
			if path != "" || err != nil {
				t.Fatalf("Install = %q, %v; want \"\", nil", path, err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s was made: %v", dir, err)
			}
		})
	}
}
