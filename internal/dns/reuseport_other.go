//go:build !linux

package dns

import "syscall"

const reusePortSupported = false

func reusePort(network, address string, c syscall.RawConn) error { return nil }

func freeBind(network, address string, c syscall.RawConn) error { return nil }
