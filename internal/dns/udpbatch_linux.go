package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpBatchSize is how many datagrams one recvmmsg takes and one sendmmsg
// answers: under load the socket's queue holds many, and a batch pays the
// system calls' cost (dear on a virtualised host) once for all of them.
// With one query waiting, a batch is that one.
const udpBatchSize = 16

// udpBatchBuf is each slot's buffer for a query and for its answer. A UDP
// query is a header, one question and an OPT record: a datagram longer
// than this is cut short and answered FORMERR when its records do not fit
// (the answer is at most MaxUDPAnswer; one that needs more room while it is
// built takes it from the heap).
const udpBatchBuf = 4096

// mmsghdr is struct mmsghdr: one message of recvmmsg and sendmmsg.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// udpBatch reads a UDP socket's queries with recvmmsg and writes their
// answers with sendmmsg, each answer to the address (the sockaddr as the
// kernel gave it) its query came from. golang.org/x/net's ReadBatch and
// WriteBatch make the same calls, but parse each sender into a new
// net.UDPAddr and marshal it back (allocations on every query) and need an
// ipv4 or ipv6 PacketConn per family; here the headers, buffers and
// sockaddrs are the socket's own, reused for every batch.
type udpBatch struct {
	rc    syscall.RawConn
	recv  [udpBatchSize]mmsghdr
	riov  [udpBatchSize]unix.Iovec
	names [udpBatchSize][unix.SizeofSockaddrInet6]byte
	in    [udpBatchSize][]byte
	out   [udpBatchSize][]byte
	send  [udpBatchSize]mmsghdr
	siov  [udpBatchSize]unix.Iovec
	n     int // answers queued in send
}

func newUDPBatch(c *net.UDPConn) *udpBatch {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	b := &udpBatch{rc: rc}
	in := make([]byte, udpBatchSize*udpBatchBuf)
	out := make([]byte, udpBatchSize*udpBatchBuf)
	for i := range b.recv {
		b.in[i] = in[i*udpBatchBuf : (i+1)*udpBatchBuf : (i+1)*udpBatchBuf]
		b.out[i] = out[i*udpBatchBuf : i*udpBatchBuf : (i+1)*udpBatchBuf]
		b.riov[i].Base = &b.in[i][0]
		b.riov[i].SetLen(udpBatchBuf)
		h := &b.recv[i].hdr
		h.Name = &b.names[i][0]
		h.Iov = &b.riov[i]
		h.SetIovlen(1)
	}
	return b
}

// read waits for queries and takes up to udpBatchSize of them.
func (b *udpBatch) read() (int, error) {
	for i := range b.recv {
		b.recv[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.recv[i].hdr.Flags = 0
		b.recv[i].len = 0
	}
	return mmsg(b.rc.Read, unix.SYS_RECVMMSG, b.recv[:])
}

// query is the i-th datagram read.
func (b *udpBatch) query(i int) []byte { return b.in[i][:min(int(b.recv[i].len), udpBatchBuf)] }

// source is the address the i-th datagram came from.
func (b *udpBatch) source(i int) netip.AddrPort {
	sa := &b.names[i]
	switch binary.NativeEndian.Uint16(sa[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:4]))
	case unix.AF_INET6:
		a := netip.AddrFrom16([16]byte(sa[8:24]))
		if scope := binary.NativeEndian.Uint32(sa[24:28]); scope != 0 && a.Is6() && !a.Is4In6() {
			a = a.WithZone(strconv.FormatUint(uint64(scope), 10))
		}
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(sa[2:4]))
	}
	return netip.AddrPort{}
}

// answerBuf is the i-th slot's buffer for its answer (empty, with room).
func (b *udpBatch) answerBuf(i int) []byte { return b.out[i][:0] }

// queue adds the answer to the i-th datagram to those flush sends. resp is
// answerBuf(i) with the answer, or a larger buffer the answer needed (kept
// for the slot's later answers).
func (b *udpBatch) queue(i int, resp []byte) {
	if len(resp) == 0 {
		return
	}
	if cap(resp) > cap(b.out[i]) && cap(resp) <= 65535 {
		b.out[i] = resp[:0]
	}
	k := b.n
	b.siov[k].Base = &resp[0]
	b.siov[k].SetLen(len(resp))
	h := &b.send[k].hdr
	h.Name = &b.names[i][0]
	h.Namelen = b.recv[i].hdr.Namelen
	h.Iov = &b.siov[k]
	h.SetIovlen(1)
	b.n++
}

// flush sends the queued answers. An answer the kernel refuses (its
// client's address unreachable, say) is skipped as a lost datagram; the
// others still go.
func (b *udpBatch) flush() error {
	defer func() { b.n = 0 }()
	for sent := 0; sent < b.n; {
		r, err := mmsg(b.rc.Write, unix.SYS_SENDMMSG, b.send[sent:b.n])
		if _, ok := err.(syscall.Errno); ok {
			r = 1 // this one failed: go on with the next
		} else if err != nil {
			return err
		}
		sent += r
	}
	return nil
}

// mmsg makes the system call trap (recvmmsg or sendmmsg) on msgs through
// io (the socket's RawConn Read or Write, which waits until the socket is
// ready when the call would block) and returns how many messages it took:
// an errno of the call itself, or the socket's error (closed, say).
func mmsg(io func(func(fd uintptr) bool) error, trap uintptr, msgs []mmsghdr) (int, error) {
	var n int
	var errno syscall.Errno
	err := io(func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait until the socket is ready
			}
			n, errno = int(r), e
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}
