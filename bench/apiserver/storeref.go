package main

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"sync"
	"time"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/storage/bolt"
)

// storedConfigMap returns what the API server stored for one of the
// 16-client benchmark's ConfigMaps, read from the stopped cluster's file:
// the store reference writes exactly these bytes.
func storedConfigMap(ctx context.Context, dataDir string) ([]byte, error) {
	s, err := bolt.Open(app.StorePath(dataDir), bolt.Options{})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	name := objName("cm", 0)
	for _, prefix := range []string{"/registry/core/configmaps/"} {
		kv, err := s.Get(ctx, prefix+nsMany+"/"+name)
		if err == nil {
			return kv.Value, nil
		}
	}
	return nil, fmt.Errorf("ConfigMap %s/%s not found in %s", nsMany, name, app.StorePath(dataDir))
}

// storeReference is the 16-client create benchmark on the bolt store alone,
// without the API server: 16 goroutines each creating one key at a time,
// the value being what the server stored for a benchmark ConfigMap. The
// same group commit and write-ahead log as under the server.
func storeReference(ctx context.Context, r *report, o options, dir string, value []byte) error {
	s, err := bolt.Open(filepath.Join(dir, "store.db"), bolt.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	write := func(prefix string, total int) ([]time.Duration, error) {
		lat := make([]time.Duration, total)
		errs := make([]error, 16)
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := w; i < total; i += 16 {
					t := time.Now()
					_, err := s.Create(ctx, "/registry/core/configmaps/"+nsMany+"/"+objName(prefix, i), value)
					lat[i] = time.Since(t)
					if err != nil {
						errs[w] = err
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		return lat, nil
	}
	if _, err := write("warm", 320); err != nil {
		return fmt.Errorf("store reference warm-up: %w", err)
	}
	total := o.creates16
	m := startMeter()
	t := time.Now()
	lat, err := write("cm", total)
	wall := time.Since(t)
	if err != nil {
		return fmt.Errorf("store reference: %w", err)
	}
	name := "reference: create, 16 writers, bolt store alone (no API server)"
	log.Printf("%s: %d creates in %v", name, total, wall.Round(time.Millisecond))
	r.add(name, "throughput (durable creates/s)", rate(total, wall)).
		with(fmt.Sprintf("%d values of %s (a stored benchmark ConfigMap) in %v; %s; %s", total, bytesHuman(len(value)), wall.Round(time.Millisecond), m.perOp(total, "create"), m))
	r.add(name, "latency p50 / p99", ms(percentile(lat, 50))+" / "+ms(percentile(lat, 99))).with("max " + ms(percentile(lat, 100)))
	return nil
}
