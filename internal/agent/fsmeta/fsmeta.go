// Package fsmeta serialises the node agent's changes to directory entries
// on the disk (making and removing the pods' log directories and files,
// their network namespace files): one at a time across the agent's pod
// workers.
//
// A journaled filesystem serialises such changes itself, but waiting
// there costs CPU: on the machine of bench/results-agent.md an ext4 mkdir
// takes 190 µs of CPU alone and about 1 ms each when 16 goroutines make
// directories at once (the kernel's locks spin), with no more of them done
// per second. A hundred pods starting together do exactly that. Waiting
// on a Go mutex instead costs nothing, and the changes finish sooner.
// Files on a tmpfs (the pods' own directory) need none of this.
package fsmeta

import "sync"

var mu sync.Mutex

// Do runs fn, which makes or removes directory entries on the disk, alone
// among the callers of Do.
func Do(fn func() error) error {
	mu.Lock()
	defer mu.Unlock()
	return fn()
}
