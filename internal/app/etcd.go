package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/transport"

	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/etcd"
)

// etcdStore is the etcd store with the client it owns.
type etcdStore struct {
	*etcd.Store
	client *clientv3.Client
}

func (s *etcdStore) Close() error {
	err := s.Store.Close()
	if cerr := s.client.Close(); err == nil {
		err = cerr
	}
	return err
}

// openEtcd connects to etcd and reads its revision, failing with the
// endpoints named when it cannot be reached.
func openEtcd(o EtcdOptions) (storage.Interface, error) {
	endpoints := strings.Join(o.Endpoints, ",")
	cfg := clientv3.Config{Endpoints: o.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" {
		tc, err := transport.TLSConfigFor(&transport.Config{TLS: transport.TLSConfig{CAFile: o.CAFile, CertFile: o.CertFile, KeyFile: o.KeyFile}})
		if err != nil {
			return nil, fmt.Errorf("--etcd-cafile/--etcd-certfile/--etcd-keyfile: %w", err)
		}
		if tc == nil {
			tc = &tls.Config{}
		}
		cfg.TLS = tc
	}
	client, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd at %s: %w", endpoints, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := etcd.New(ctx, client, etcd.Options{Prefix: o.Prefix})
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("etcd at %s is not reachable (is it running? check --etcd-endpoints and the TLS flags): %w", endpoints, err)
	}
	return &etcdStore{Store: s, client: client}, nil
}
