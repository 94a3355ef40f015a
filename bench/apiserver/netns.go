package main

import (
	"log"
	"os"
	"os/exec"
	"syscall"
)

const inNamespacesEnv = "HEADWAY_BENCH_IN_NAMESPACES"

// inOwnNamespaces re-runs this program in new network and mount namespaces
// and returns its exit code with done set; in that re-run it brings up the
// namespace's loopback and returns done unset. A server with a node agent
// then makes its bridge, routes and rules there, out of the host's way.
func inOwnNamespaces() (code int, done bool) {
	if os.Getenv(inNamespacesEnv) != "" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			log.Fatalf("bringing up lo in the benchmark's network namespace: %v: %s", err, out)
		}
		return 0, false
	}
	if os.Geteuid() != 0 {
		log.Fatalf("-netns needs root (new network and mount namespaces)")
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), inNamespacesEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), true
		}
		log.Fatalf("re-running in new namespaces: %v", err)
	}
	return 0, true
}
