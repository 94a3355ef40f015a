package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"

	"github.com/headway/headway/internal/storage"
)

// On-disk layout, one bbolt file:
//
//	meta  "version"   → uvarint formatVersion
//	      "revision"  → uvarint current revision (of the last write)
//	      "compacted" → uvarint compacted revision
//	kv    key         → uvarint createRev, uvarint modRev, value
//	log   8-byte big-endian revision → one change:
//	      byte type (1 put, 2 delete), byte flags (1 created),
//	      uvarint createRev, uvarint prevModRev,
//	      uvarint len(key), key, uvarint len(value), value, prevValue
//
// For a delete, value is the value before the delete and prevValue is empty.

const formatVersion = 1

var (
	bucketMeta = []byte("meta")
	bucketKV   = []byte("kv")
	bucketLog  = []byte("log")

	metaVersion   = []byte("version")
	metaRevision  = []byte("revision")
	metaCompacted = []byte("compacted")
)

const (
	logPut    = 1
	logDelete = 2

	flagCreated = 1
)

var errCorrupt = errors.New("storage/bolt: corrupt record")

func revKey(rev int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	return b[:]
}

func keyRev(k []byte) int64 { return int64(binary.BigEndian.Uint64(k)) }

func encodeUint(v int64) []byte { return binary.AppendUvarint(nil, uint64(v)) }

func decodeUint(b []byte) (int64, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, errCorrupt
	}
	return int64(v), nil
}

func encodeItem(createRev, modRev int64, value []byte) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(value))
	b = binary.AppendUvarint(b, uint64(createRev))
	b = binary.AppendUvarint(b, uint64(modRev))
	return append(b, value...)
}

// decodeItem decodes a kv record; value aliases b.
func decodeItem(b []byte) (createRev, modRev int64, value []byte, err error) {
	c, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, errCorrupt
	}
	b = b[n:]
	m, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, errCorrupt
	}
	return int64(c), int64(m), b[n:], nil
}

func encodeChange(c *storage.Change) []byte {
	value, prev := c.KV.Value, c.PrevValue
	typ := byte(logPut)
	if c.Type == storage.EventDelete {
		typ, prev = logDelete, nil
	}
	var flags byte
	if c.Created {
		flags |= flagCreated
	}
	b := make([]byte, 0, 2+4*binary.MaxVarintLen64+len(c.KV.Key)+len(value)+len(prev))
	b = append(b, typ, flags)
	b = binary.AppendUvarint(b, uint64(c.KV.CreateRevision))
	b = binary.AppendUvarint(b, uint64(c.PrevModRevision))
	b = binary.AppendUvarint(b, uint64(len(c.KV.Key)))
	b = append(b, c.KV.Key...)
	b = binary.AppendUvarint(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, prev...)
}

// changeKey returns the key of an encoded change without decoding the rest.
func changeKey(b []byte) ([]byte, error) {
	if len(b) < 2 {
		return nil, errCorrupt
	}
	b = b[2:]
	for range 2 {
		_, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errCorrupt
		}
		b = b[n:]
	}
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return nil, errCorrupt
	}
	return b[n : n+int(l)], nil
}

// decodeChange decodes the change logged at revision rev, copying its bytes
// out of b (which bbolt owns).
func decodeChange(rev int64, b []byte) (storage.Change, error) {
	var c storage.Change
	if len(b) < 2 {
		return c, errCorrupt
	}
	typ, flags := b[0], b[1]
	b = b[2:]
	var fields [2]uint64
	for i := range fields {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return c, errCorrupt
		}
		fields[i], b = v, b[n:]
	}
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return c, errCorrupt
	}
	key := string(b[n : n+int(l)])
	b = b[n+int(l):]
	l, n = binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return c, errCorrupt
	}
	// One allocation for value and prevValue.
	buf := bytes.Clone(b[n:])
	value, prev := buf[:l:l], buf[l:]

	c.Revision = rev
	c.PrevModRevision = int64(fields[1])
	c.KV = storage.KV{Key: key, Value: value, CreateRevision: int64(fields[0]), ModRevision: rev}
	switch typ {
	case logPut:
		c.Type = storage.EventPut
		if flags&flagCreated != 0 {
			c.Created = true
		} else {
			c.PrevValue = prev
		}
	case logDelete:
		c.Type = storage.EventDelete
		c.PrevValue = value
	default:
		return c, errCorrupt
	}
	return c, nil
}
