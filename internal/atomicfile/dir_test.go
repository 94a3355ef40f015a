package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func visible(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p) // through the links
		if err != nil {
			t.Fatal(err)
		}
		if st.IsDir() {
			for k, v := range visible(t, p) {
				out[e.Name()+"/"+k] = v
			}
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(data)
	}
	return out
}

func TestWriteDirSwapsContent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	if err := WriteDir(dir, map[string][]byte{"token": []byte("one"), "ca.crt": []byte("ca")}, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := visible(t, dir); got["token"] != "one" || got["ca.crt"] != "ca" || len(got) != 2 {
		t.Fatalf("first content %v", got)
	}
	if target, err := os.Readlink(filepath.Join(dir, "token")); err != nil || target != "..data/token" {
		t.Errorf("token is %q (%v), want a link through ..data", target, err)
	}
	first, _ := os.Readlink(filepath.Join(dir, "..data"))

	if err := WriteDir(dir, map[string][]byte{"token": []byte("two"), "sub/namespace": []byte("shop")}, 0o600); err != nil {
		t.Fatal(err)
	}
	got := visible(t, dir)
	if got["token"] != "two" || got["sub/namespace"] != "shop" || len(got) != 2 {
		t.Fatalf("second content %v, want token and sub/namespace only", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "ca.crt")); !os.IsNotExist(err) {
		t.Error("a key no longer written is still there")
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Error("the previous content's directory was not removed")
	}
	if st, _ := os.Stat(filepath.Join(dir, "token")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 4 || !slices.Contains(names, "..data") { // ..data, the content dir, sub, token
		t.Errorf("dir holds %v", names)
	}
}

func TestWriteDirReplacesPlainFiles(t *testing.T) {
	// A volume written before, file by file: its entries give way.
	dir := filepath.Join(t.TempDir(), "vol")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "token"), []byte("plain"), 0o644)
	os.WriteFile(filepath.Join(dir, "stale"), []byte("x"), 0o644)
	if err := WriteDir(dir, map[string][]byte{"token": []byte("new")}, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := visible(t, dir); got["token"] != "new" || len(got) != 1 {
		t.Fatalf("content %v", got)
	}
}

func TestWriteDirRefusesEscapes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	for _, bad := range []string{"../x", "/etc/passwd", "a/../../x", "..data", "a/..b"} {
		if err := WriteDir(dir, map[string][]byte{bad: nil}, 0o644); err == nil {
			t.Errorf("path %q was accepted", bad)
		}
	}
}
