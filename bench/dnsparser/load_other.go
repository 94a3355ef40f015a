//go:build !(linux && amd64)

package main

import "errors"

func runLoad(addr string) error {
	return errors.New("the Go load generator needs linux/amd64 (sendmmsg, recvmmsg); use -loader dnsperf")
}
