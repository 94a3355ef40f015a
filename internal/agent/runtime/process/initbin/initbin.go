// Package initbin carries the small container-init binary (cmd/headway-init)
// that `make build` embeds in headway, and installs it for the process
// runtime.
package initbin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/headway/headway/internal/atomicfile"
)

//go:embed bin
var embedded embed.FS

// files is what Install reads bin/headway-init from (tests replace it).
var files fs.FS = embedded

// SHA256 is the hex SHA-256 of the headway-init that `make build` built
// and embedded, stamped with -ldflags -X. The embedded file is used only
// when it has this digest: a headway built without the stamp (a plain `go
// build`), or with a headway-init left from another build, runs its own
// executable as the container init instead.
var SHA256 string

// Name is the installed file's name.
const Name = "headway-init"

// Install writes the embedded headway-init into dir (unless an identical
// file is there) and returns its path. It returns "" and no error when this
// binary carries no matching headway-init.
func Install(dir string) (string, error) {
	if SHA256 == "" {
		return "", nil
	}
	data, err := fs.ReadFile(files, "bin/"+Name)
	if err != nil {
		return "", nil
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != SHA256 {
		return "", nil
	}
	path := filepath.Join(dir, Name)
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("installing the container init: %w", err)
	}
	if err := atomicfile.WriteUnsynced(path, data, 0o500); err != nil {
		return "", fmt.Errorf("installing the container init at %s: %w", path, err)
	}
	return path, nil
}
