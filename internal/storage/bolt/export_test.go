package bolt

// SetSegmentSize sets the write-ahead log's segment size for a test and
// returns the function that puts it back.
func SetSegmentSize(n int64) func() {
	old := walSegmentSize
	walSegmentSize = n
	return func() { walSegmentSize = old }
}
