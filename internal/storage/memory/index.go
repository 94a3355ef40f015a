package memory

import (
	"slices"
	"sort"
)

// maxChunk bounds a chunk of the key index; a fuller chunk is split in two.
const maxChunk = 512

// keyIndex keeps the stored keys in lexical order as a list of sorted chunks,
// so an insert or delete moves at most maxChunk keys and a seek is two binary
// searches.
type keyIndex struct {
	chunks [][]string
	n      int
}

// find returns the position of the first key >= key: chunk ci, offset i.
// ci == len(x.chunks) when every key is smaller.
func (x *keyIndex) find(key string) (ci, i int) {
	ci = sort.Search(len(x.chunks), func(j int) bool {
		c := x.chunks[j]
		return c[len(c)-1] >= key
	})
	if ci == len(x.chunks) {
		return ci, 0
	}
	return ci, sort.SearchStrings(x.chunks[ci], key)
}

func (x *keyIndex) insert(key string) {
	x.n++
	if len(x.chunks) == 0 {
		x.chunks = [][]string{{key}}
		return
	}
	ci, i := x.find(key)
	if ci == len(x.chunks) {
		ci = len(x.chunks) - 1
		i = len(x.chunks[ci])
	}
	c := slices.Insert(x.chunks[ci], i, key)
	if len(c) <= maxChunk {
		x.chunks[ci] = c
		return
	}
	half := len(c) / 2
	left := c[:half:half]
	right := slices.Clone(c[half:])
	clear(c[half:])
	x.chunks[ci] = left
	x.chunks = slices.Insert(x.chunks, ci+1, right)
}

func (x *keyIndex) remove(key string) {
	ci, i := x.find(key)
	if ci == len(x.chunks) || x.chunks[ci][i] != key {
		return
	}
	x.n--
	c := slices.Delete(x.chunks[ci], i, i+1)
	if len(c) == 0 {
		x.chunks = slices.Delete(x.chunks, ci, ci+1)
		return
	}
	x.chunks[ci] = c
}

// rank returns the number of keys smaller than key.
func (x *keyIndex) rank(key string) int {
	ci, i := x.find(key)
	n := i
	for _, c := range x.chunks[:ci] {
		n += len(c)
	}
	return n
}

// ascend calls fn for the keys >= from in order until fn returns false.
func (x *keyIndex) ascend(from string, fn func(key string) bool) {
	ci, i := x.find(from)
	for ; ci < len(x.chunks); ci, i = ci+1, 0 {
		for _, k := range x.chunks[ci][i:] {
			if !fn(k) {
				return
			}
		}
	}
}
