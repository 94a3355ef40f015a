package app

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/transport"

	"github.com/headway/headway/internal/pki"
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

// clusterPKIKey holds, in a shared store, fingerprints of the PKI the
// first server made: every server on the store must use the same.
const clusterPKIKey = "/headway/cluster/pki"

type pkiFingerprints struct {
	CA                string `json:"ca"`
	ServiceAccountKey string `json:"serviceAccountKey"`
	AdminToken        string `json:"adminToken"`
}

func fingerprint(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkSharedPKI records this server's PKI in the store when it is the
// first, else refuses to start with a PKI that differs from the first
// server's: its tokens, certificates and service-account tokens would not
// be accepted by the others.
func checkSharedPKI(ctx context.Context, store storage.Interface, b *pki.Bundle) error {
	pub, err := x509.MarshalPKIXPublicKey(b.ServiceAccountKey.Public())
	if err != nil {
		return fmt.Errorf("reading the service-account key in %s: %w", b.Dir, err)
	}
	ours := pkiFingerprints{CA: fingerprint(b.CACert.Raw), ServiceAccountKey: fingerprint(pub), AdminToken: fingerprint([]byte(b.Token))}
	data, err := json.Marshal(ours)
	if err != nil {
		return err
	}
	_, err = store.Create(ctx, clusterPKIKey, data)
	if err == nil {
		return nil
	}
	if !errors.Is(err, storage.ErrKeyExists) {
		return fmt.Errorf("recording the cluster PKI in the store: %w", err)
	}
	kv, err := store.Get(ctx, clusterPKIKey)
	if err != nil {
		return fmt.Errorf("reading the cluster PKI from the store: %w", err)
	}
	var theirs pkiFingerprints
	if err := json.Unmarshal(kv.Value, &theirs); err != nil {
		return fmt.Errorf("reading the cluster PKI from the store (%s): %w", clusterPKIKey, err)
	}
	var differ []string
	if theirs.CA != ours.CA {
		differ = append(differ, "CA (ca.crt)")
	}
	if theirs.ServiceAccountKey != ours.ServiceAccountKey {
		differ = append(differ, "service-account key (sa.key)")
	}
	if theirs.AdminToken != ours.AdminToken {
		differ = append(differ, "admin token (admin.token)")
	}
	if len(differ) > 0 {
		return fmt.Errorf("the store already belongs to servers with another %s than %s: copy the first server's pki directory (<data-dir>/pki) to this one's and pass it as --pki-dir, or use another --etcd-prefix for a separate cluster",
			strings.Join(differ, ", "), b.Dir)
	}
	return nil
}
