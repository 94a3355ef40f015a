package containerinit

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestConfigWireRoundTrip(t *testing.T) {
	for _, c := range []*Config{
		{},
		{Root: "/tmp/pods/x/rootfs", Proc: true, Sysfs: true, Mqueue: true, Hide: []string{"/var/lib/headway", "/srv/pods"},
			Path: "/bin/sh", Argv: []string{"sh", "-c", "echo 'a b' \"ü\"\n"}, Env: []string{"PATH=/bin", "EMPTY="}, Dir: "/work", TTY: true,
			Cred:        Cred{UID: 1000, GID: 4294967295, Groups: []uint32{0, 5, 65534}},
			Confinement: Confinement{Privileged: false, Caps: []int{0, 1, 40}, NoNewPrivs: true, Seccomp: true, Filter: bytes.Repeat([]byte{0, 0x80, 0xff}, 300)}},
		{Confinement: Confinement{Privileged: true}, Argv: []string{""}, Env: []string{}},
	} {
		var buf bytes.Buffer
		if err := c.Encode(&buf); err != nil {
			t.Fatal(err)
		}
		got, err := Decode(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		// Empty lists come back as nil.
		want := *c
		if len(want.Env) == 0 {
			want.Env = nil
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", *got, want)
		}
		// Every cut short form is an error, never a panic or a partial config.
		b := buf.Bytes()
		for n := range len(b) {
			if _, err := Decode(bytes.NewReader(b[:n])); err == nil {
				t.Fatalf("%d of %d bytes decoded without an error", n, len(b))
			}
		}
		if _, err := Decode(bytes.NewReader(append(bytes.Clone(b), 0))); err == nil || !strings.Contains(err.Error(), "after") {
			t.Errorf("a trailing byte: %v", err)
		}
	}
}

func TestConfigWireRejectsOtherInput(t *testing.T) {
	for _, in := range []string{"", "{\"Root\":\"\"}", "HWI1\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "HWI1\x00\x02"} {
		if c, err := Decode(strings.NewReader(in)); err == nil {
			t.Errorf("%q decoded: %+v", in, c)
		}
	}
}
