package bolt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/headway/headway/internal/storage"
)

// The write-ahead log makes a write durable with one sequential write and one
// fdatasync, where a bbolt commit needs a write per dirty page and two
// syncs. It lives beside the store file, in <file>.wal/, as segment files
// named by the first revision they were opened for (16 hex digits, ".wal").
//
// A segment is a run of records, one per group commit:
//
//	u32 length of the payload, u32 CRC-32C of the payload (little-endian), payload
//	payload: uvarint first revision, uvarint count, then count changes:
//	         byte type (1 put, 2 delete), uvarint len(key), key,
//	         for a put: uvarint len(value), value
//
// The changes have consecutive revisions from the first. Reading a segment
// stops at the first record that is not whole and intact (a zero length, a
// CRC mismatch, the end of the file) or whose first revision is older than
// the one expected next: space not written yet, a write torn by a crash, or
// the records of a segment's earlier life (segments are reused once bbolt
// holds everything in them, so that a sync never has to allocate blocks).
// A record that starts later than expected, or an intact record continuing
// the log right after one that fails its CRC, is damage: the open stops.

const (
	walHeader = 8
	walSuffix = ".wal"
)

// walSegmentSize is the size a segment is reserved at and grows to before
// the writer starts the next (tests make it small).
var walSegmentSize int64 = 16 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// walDir is where the log of the store file at path lives.
func walDir(path string) string { return path + walSuffix }

type walSegment struct {
	path string
	last int64 // revision of its last record
}

// wal is the log's writing side. The writer goroutine alone appends; the
// flusher releases segments whose records bbolt holds.
type wal struct {
	dir  string
	f    *os.File // the segment being appended to
	path string
	off  int64
	last int64
	buf  []byte

	mu    sync.Mutex
	full  []walSegment // earlier segments, oldest first
	spare string       // a segment bbolt holds all of, kept for reuse
}

func segmentName(dir string, first int64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x%s", first, walSuffix))
}

// segments lists the log's segment files in revision order.
func segments(dir string) ([]string, error) {
	return filesIn(dir, func(n string) bool {
		if !strings.HasSuffix(n, walSuffix) || len(n) != 16+len(walSuffix) {
			return false
		}
		_, err := strconv.ParseUint(strings.TrimSuffix(n, walSuffix), 16, 64)
		return err == nil
	})
}

// filesIn lists the regular files in dir whose names match, sorted by name;
// none when dir does not exist.
func filesIn(dir string, match func(name string) bool) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && match(n) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	slices.Sort(out)
	return out, nil
}

func segmentFirst(path string) int64 {
	v, _ := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), walSuffix), 16, 64)
	return int64(v)
}

// readLog calls fn for every change in the log in dir after revision
// after (what the file holds), in revision order; key and value are valid
// during the call only. A revision missing after after is damage. See the
// format above for where a segment ends.
func readLog(dir string, after int64, fn func(rev int64, typ byte, key, value []byte) error) error {
	files, err := segments(dir)
	if err != nil {
		return err
	}
	next := after + 1
	for _, path := range files {
		err := readSegment(path, func(rev int64, typ byte, key, value []byte) error {
			switch {
			case rev < next:
				return nil // the file has it
			case rev > next:
				return &DamagedError{Path: dir, Detail: fmt.Sprintf("the write-ahead log lacks revisions %d to %d", next, rev-1)}
			}
			next++
			return fn(rev, typ, key, value)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readSegment calls fn for every change of one segment's records.
func readSegment(path string, fn func(rev int64, typ byte, key, value []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	size := int64(-1)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	rd := recordReader{r: bufio.NewReaderSize(f, 1<<16), left: size}
	damaged := func(off int64, what string) error {
		return &DamagedError{Path: path, Detail: fmt.Sprintf("the write-ahead log's record at offset %d %s", off, what)}
	}
	next := segmentFirst(path)
	for {
		off := rd.off
		payload, whole := rd.next()
		if payload == nil {
			// A whole record that fails its check is the torn last write,
			// followed by unwritten space or a reused segment's older
			// records, unless a record continuing the log follows it.
			if whole {
				if p, _ := rd.next(); p != nil && recordFirst(p) > next {
					return damaged(off, "is damaged, and the records after it go on")
				}
			}
			return nil
		}
		first, k := binary.Uvarint(payload)
		switch {
		case k <= 0 || int64(first) < next:
			return nil // a reused segment's older records
		case int64(first) > next:
			return damaged(off, fmt.Sprintf("starts at revision %d where %d was expected", first, next))
		}
		payload = payload[k:]
		count, k := binary.Uvarint(payload)
		if k <= 0 {
			return damaged(off, "has no change count")
		}
		payload = payload[k:]
		for i := range count {
			typ, key, value, rest, ok := decodeWALChange(payload)
			if !ok {
				return damaged(off, fmt.Sprintf("has an undecodable change at revision %d", next+int64(i)))
			}
			payload = rest
			if err := fn(next+int64(i), typ, key, value); err != nil {
				return err
			}
		}
		next += int64(count)
	}
}

// recordFirst is the first revision of a record's payload (0 if none).
func recordFirst(payload []byte) int64 {
	first, k := binary.Uvarint(payload)
	if k <= 0 {
		return 0
	}
	return int64(first)
}

// recordReader reads a segment's records one after another.
type recordReader struct {
	r      *bufio.Reader
	left   int64 // bytes of the file not read yet (-1: unknown)
	off    int64
	header [walHeader]byte
	buf    []byte
}

// next returns the next record's payload (valid until the next call), or
// nil where no whole, intact record is; whole says whether a record of the
// length its header gives was read (its check then failed).
func (rd *recordReader) next() (payload []byte, whole bool) {
	if _, err := io.ReadFull(rd.r, rd.header[:]); err != nil {
		return nil, false
	}
	n := int(binary.LittleEndian.Uint32(rd.header[:]))
	sum := binary.LittleEndian.Uint32(rd.header[4:])
	if n == 0 || (rd.left >= 0 && int64(n) > rd.left-walHeader) {
		return nil, false
	}
	if cap(rd.buf) < n {
		rd.buf = make([]byte, n)
	}
	payload = rd.buf[:n]
	if _, err := io.ReadFull(rd.r, payload); err != nil {
		return nil, false
	}
	rd.off += int64(walHeader + n)
	if rd.left >= 0 {
		rd.left -= int64(walHeader + n)
	}
	if crc32.Checksum(payload, castagnoli) != sum {
		return nil, true
	}
	return payload, true
}

func decodeWALChange(b []byte) (typ byte, key, value, rest []byte, ok bool) {
	if len(b) < 1 {
		return 0, nil, nil, nil, false
	}
	typ, b = b[0], b[1:]
	field := func() []byte {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			ok = false
			return nil
		}
		f := b[k : k+int(l)]
		b = b[k+int(l):]
		return f
	}
	ok = true
	key = field()
	switch {
	case !ok:
	case typ == logPut:
		value = field()
	case typ != logDelete:
		ok = false
	}
	return typ, key, value, b, ok
}

// openWAL prepares the log for appending from revision next, after
// everything already in it has been replayed into bbolt: one old segment is
// reused (renamed for next), the others are removed.
func openWAL(dir string, next int64) (*wal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	old, err := segments(dir)
	if err != nil {
		return nil, err
	}
	w := &wal{dir: dir}
	if len(old) > 0 {
		w.spare = old[len(old)-1]
		for _, p := range old[:len(old)-1] {
			if err := os.Remove(p); err != nil {
				return nil, err
			}
		}
	}
	if err := w.rotate(next); err != nil {
		return nil, err
	}
	return w, nil
}

// rotate starts a new segment for revisions from first: the spare if there
// is one, else a new file with its space reserved.
func (w *wal) rotate(first int64) error {
	path := segmentName(w.dir, first)
	w.mu.Lock()
	spare := w.spare
	w.spare = ""
	w.mu.Unlock()
	if spare != "" && spare != path {
		if err := os.Rename(spare, path); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if spare == "" {
		// Reserved space: a sync need not allocate. Not every file system
		// can; then the file grows as it is written.
		reserve(f, walSegmentSize)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return err
	}
	if w.f != nil {
		w.f.Close()
		w.mu.Lock()
		w.full = append(w.full, walSegment{path: w.path, last: w.last})
		w.mu.Unlock()
	}
	w.f, w.path, w.off = f, path, 0
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// append writes the changes, whose revisions run from first, as one record
// and waits until it is on disk.
func (w *wal) append(first int64, changes []*storage.Change) error {
	b := append(w.buf[:0], make([]byte, walHeader)...)
	b = binary.AppendUvarint(b, uint64(first))
	b = binary.AppendUvarint(b, uint64(len(changes)))
	for _, c := range changes {
		typ := byte(logPut)
		if c.Type == storage.EventDelete {
			typ = logDelete
		}
		b = append(b, typ)
		b = binary.AppendUvarint(b, uint64(len(c.KV.Key)))
		b = append(b, c.KV.Key...)
		if typ == logPut {
			b = binary.AppendUvarint(b, uint64(len(c.KV.Value)))
			b = append(b, c.KV.Value...)
		}
	}
	payload := b[walHeader:]
	binary.LittleEndian.PutUint32(b, uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(payload, castagnoli))
	w.buf = b
	if w.off > 0 && w.off+int64(len(b)) > walSegmentSize {
		if err := w.rotate(first); err != nil {
			return err
		}
	}
	if _, err := w.f.WriteAt(b, w.off); err != nil {
		return err
	}
	if err := datasync(w.f); err != nil {
		return err
	}
	w.off += int64(len(b))
	w.last = first + int64(len(changes)) - 1
	if cap(w.buf) > 1<<20 {
		w.buf = nil // a large record's buffer is not kept
	}
	return nil
}

// release lets go of the segments whose records bbolt holds up to
// revision flushed: one is kept for reuse, the others are removed.
func (w *wal) release(flushed int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.full) > 0 && w.full[0].last <= flushed {
		p := w.full[0].path
		w.full = w.full[1:]
		if w.spare == "" {
			w.spare = p
			continue
		}
		_ = os.Remove(p)
	}
}

// close closes the segment being written. When bbolt holds every record
// (clean is true), the first header of that segment and of the spare is
// zeroed first, so that the next open reads nothing of them.
func (w *wal) close(clean bool) error {
	if w.f == nil {
		return nil
	}
	var err error
	if clean {
		if w.off > 0 {
			_, err = w.f.WriteAt(make([]byte, walHeader), 0)
		}
		w.mu.Lock()
		spare := w.spare
		w.mu.Unlock()
		if spare != "" && err == nil {
			err = zeroHeader(spare)
		}
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

func zeroHeader(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, walHeader), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// discardWAL moves the log of the store file at path aside, to the name
// kept+".wal": its records belong to the file being replaced.
func discardWAL(path, kept string) error {
	dir := walDir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if kept == "" {
		return os.RemoveAll(dir)
	}
	return os.Rename(dir, kept+walSuffix)
}
