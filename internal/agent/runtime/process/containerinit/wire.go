package containerinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The agent sends a container's Config to its init in this form rather
// than as JSON: encoding/json's first decode in a fresh process builds its
// reflection caches, about 1 ms of every container's start on this
// project's machines, where this decoder takes microseconds. The form is a
// magic, then the fields in the order of Encode, each string or byte slice
// a uvarint length and its bytes, each list a uvarint count and its items,
// each number a uvarint, each bool one byte.

// wireMagic starts a configuration; a new form gets a new magic, so an init
// and an agent of different builds fail clearly instead of misreading.
const wireMagic = "HWI1"

// maxWire bounds a configuration (argv and environment included).
const maxWire = 16 << 20

// Encode writes c to w in the form Decode reads.
func (c *Config) Encode(w io.Writer) error {
	var e enc
	e.b = append(e.b, wireMagic...)
	e.str(c.Root)
	e.bool(c.Proc)
	e.bool(c.Sysfs)
	e.bool(c.Mqueue)
	e.strs(c.Hide)
	e.str(c.Path)
	e.strs(c.Argv)
	e.strs(c.Env)
	e.str(c.Dir)
	e.bool(c.TTY)
	e.uint(uint64(c.Cred.UID))
	e.uint(uint64(c.Cred.GID))
	e.uint(uint64(len(c.Cred.Groups)))
	for _, g := range c.Cred.Groups {
		e.uint(uint64(g))
	}
	e.bool(c.Privileged)
	e.uint(uint64(len(c.Caps)))
	for _, cp := range c.Caps {
		if cp < 0 {
			return fmt.Errorf("capability %d out of range", cp)
		}
		e.uint(uint64(cp))
	}
	e.bool(c.NoNewPrivs)
	e.bool(c.Seccomp)
	e.str(string(c.Filter))
	if len(e.b) > maxWire {
		return fmt.Errorf("the container's configuration is %d bytes, more than %d", len(e.b), maxWire)
	}
	_, err := w.Write(e.b)
	return err
}

// Decode reads a configuration Encode wrote: all of r (the agent closes
// its end after writing).
func Decode(r io.Reader) (*Config, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxWire+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxWire {
		return nil, fmt.Errorf("more than %d bytes", maxWire)
	}
	if len(b) < len(wireMagic) || string(b[:len(wireMagic)]) != wireMagic {
		return nil, errors.New("not a configuration from this build's agent")
	}
	d := dec{b: b[len(wireMagic):]}
	c := &Config{}
	c.Root = d.str()
	c.Proc = d.bool()
	c.Sysfs = d.bool()
	c.Mqueue = d.bool()
	c.Hide = d.strs()
	c.Path = d.str()
	c.Argv = d.strs()
	c.Env = d.strs()
	c.Dir = d.str()
	c.TTY = d.bool()
	c.Cred.UID = d.uint32()
	c.Cred.GID = d.uint32()
	if n := d.count(); n > 0 {
		c.Cred.Groups = make([]uint32, n)
		for i := range c.Cred.Groups {
			c.Cred.Groups[i] = d.uint32()
		}
	}
	c.Privileged = d.bool()
	if n := d.count(); n > 0 {
		c.Caps = make([]int, n)
		for i := range c.Caps {
			c.Caps[i] = int(d.uint32())
		}
	}
	c.NoNewPrivs = d.bool()
	c.Seccomp = d.bool()
	if f := d.str(); f != "" {
		c.Filter = []byte(f)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the configuration", len(d.b))
	}
	return c, nil
}

type enc struct{ b []byte }

func (e *enc) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *enc) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) strs(ss []string) {
	e.uint(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

// dec reads what enc wrote; the first error sticks and every later read
// returns a zero value.
type dec struct {
	b   []byte
	err error
}

var errShort = errors.New("the configuration ends early")

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.err = errShort
		return 0
	case n < 0:
		d.err = errors.New("a number in the configuration is too long")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) uint32() uint32 {
	v := d.uint()
	if v > 1<<32-1 && d.err == nil {
		d.err = fmt.Errorf("a number in the configuration is out of range: %d", v)
	}
	return uint32(v)
}

// count is a list's length, at most what is left (each item is a byte or
// more).
func (d *dec) count() int {
	n := d.uint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errShort
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func (d *dec) bool() bool {
	if d.err != nil {
		return false
	}
	if len(d.b) == 0 {
		d.err = errShort
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.err = fmt.Errorf("a flag in the configuration is %d", v)
	}
	return v == 1
}

func (d *dec) str() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *dec) strs() []string {
	n := d.count()
	if d.err != nil || n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}
