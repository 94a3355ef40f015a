//go:build linux && amd64

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	mdns "github.com/miekg/dns"
)

const (
	sysSendmmsg   = 307 // linux/amd64
	sysRecvmmsg   = 299
	msgWaitForOne = 0x10000
	batch         = 64
)

// mmsghdr is struct mmsghdr of linux/amd64.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// runLoad is the Go load generator: one connected UDP socket on a locked
// thread keeps -window queries outstanding, sending and receiving in
// batches of up to 64 (sendmmsg, recvmmsg), so that per query it costs far
// less than the server's one read and one write. A query unanswered for
// 100 ms counts as lost. It prints the answers received and the queries
// sent.
func runLoad(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("-load %q: want an IPv4 ip:port", addr)
	}
	var queries [][]byte
	for _, line := range mixQueries() {
		f := strings.Fields(line)
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(f[0]), mdns.StringToType[f[1]])
		b, err := m.Pack()
		if err != nil {
			return err
		}
		queries = append(queries, b)
	}

	runtime.LockOSThread()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)
	tv := syscall.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return err
	}

	var (
		sbuf  [batch][512]byte
		rbuf  [batch][4096]byte
		siov  [batch]syscall.Iovec
		riov  [batch]syscall.Iovec
		shdrs [batch]mmsghdr
		rhdrs [batch]mmsghdr
	)
	for i := range batch {
		riov[i].Base, riov[i].Len = &rbuf[i][0], uint64(len(rbuf[i]))
		rhdrs[i].hdr.Iov, rhdrs[i].hdr.Iovlen = &riov[i], 1
		siov[i].Base = &sbuf[i][0]
		shdrs[i].hdr.Iov, shdrs[i].hdr.Iovlen = &siov[i], 1
	}
	var sent, answered int64
	inflight, next := 0, 0
	var id uint16
	deadline := time.Now().Add(*duration)
	for {
		sending := time.Now().Before(deadline)
		if !sending && inflight == 0 {
			break
		}
		if n := min(*window-inflight, batch); sending && n > 0 {
			for i := 0; i < n; i++ {
				q := queries[next]
				next = (next + 1) % len(queries)
				copy(sbuf[i][:], q)
				id++
				binary.BigEndian.PutUint16(sbuf[i][:], id)
				siov[i].Len = uint64(len(q))
			}
			k, _, errno := syscall.Syscall6(sysSendmmsg, uintptr(fd), uintptr(unsafe.Pointer(&shdrs[0])), uintptr(n), 0, 0, 0)
			if errno != 0 && errno != syscall.EAGAIN && errno != syscall.EINTR && errno != syscall.ECONNREFUSED {
				return fmt.Errorf("sendmmsg: %w", errno)
			}
			if errno == 0 {
				sent += int64(k)
				inflight += int(k)
			}
		}
		if inflight == 0 {
			continue
		}
		k, _, errno := syscall.Syscall6(sysRecvmmsg, uintptr(fd), uintptr(unsafe.Pointer(&rhdrs[0])), batch, msgWaitForOne, 0, 0)
		switch {
		case errno == 0:
			answered += int64(k)
			inflight = max(0, inflight-int(k))
		case errors.Is(errno, syscall.EAGAIN):
			inflight = 0 // 100 ms without an answer: the rest is lost
		case errno == syscall.EINTR || errno == syscall.ECONNREFUSED:
		default:
			return fmt.Errorf("recvmmsg: %w", errno)
		}
	}
	fmt.Println(answered, sent)
	return nil
}
