// Package pki creates and keeps the cluster's certificate authority, the API
// server's serving certificate and the admin bearer token in the data dir.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/headway/headway/internal/atomicfile"
)

// Bundle is the loaded PKI.
type Bundle struct {
	Dir       string
	CACert    *x509.Certificate
	CAKey     *ecdsa.PrivateKey
	CAPEM     []byte
	CAPool    *x509.CertPool
	Serving   tls.Certificate
	Token     string
	TokenFile string
	// ServiceAccountKey signs service-account tokens (sa.key; made once,
	// an ECDSA P-256 key, or an RSA key put there by hand).
	ServiceAccountKey crypto.Signer

	// noSync: files are written without syncing (Options.NoSync).
	noSync bool
}

// File names inside the pki directory.
const (
	caCertFile      = "ca.crt"
	caKeyFile       = "ca.key"
	servingCertFile = "apiserver.crt"
	servingKeyFile  = "apiserver.key"
	tokenFile       = "admin.token"
	saKeyFile       = "sa.key"
	saPubFile       = "sa.pub"
)

// Options change how LoadOrCreateWith keeps the files.
type Options struct {
	// NoSync writes the files without syncing them to disk (still
	// atomically): for throwaway directories such as pkg/headwaytest's,
	// where the syncs are most of the cost of a new PKI.
	NoSync bool
}

// LoadOrCreate loads the PKI from dir, creating what is missing. The serving
// certificate is (re)issued when it does not cover hosts or is near expiry.
func LoadOrCreate(dir string, hosts []string) (*Bundle, error) {
	return LoadOrCreateWith(dir, hosts, Options{})
}

// LoadOrCreateWith is LoadOrCreate with options.
func LoadOrCreateWith(dir string, hosts []string, o Options) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	b := &Bundle{Dir: dir, TokenFile: filepath.Join(dir, tokenFile), noSync: o.NoSync}
	if err := b.loadOrCreateCA(); err != nil {
		return nil, err
	}
	if err := b.loadOrCreateServing(hosts); err != nil {
		return nil, err
	}
	if err := b.loadOrCreateToken(); err != nil {
		return nil, err
	}
	if err := b.loadOrCreateServiceAccountKey(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Bundle) path(name string) string { return filepath.Join(b.Dir, name) }

func (b *Bundle) loadOrCreateCA() error {
	certPEM, err1 := os.ReadFile(b.path(caCertFile))
	keyPEM, err2 := os.ReadFile(b.path(caKeyFile))
	if err1 == nil && err2 == nil {
		cert, key, err := parsePair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("reading the CA in %s: %w (remove the pki directory to start over)", b.Dir, err)
		}
		b.CACert, b.CAKey, b.CAPEM = cert, key, certPEM
	} else {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		// Valid for ten years from an hour ago (clocks of other machines).
		ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "headway-ca", NotBefore: time.Now().Add(-time.Hour)}, key)
		if err != nil {
			return err
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: certutil.CertificateBlockType, Bytes: ca.Raw})
		keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
		if err != nil {
			return err
		}
		if err := b.writePair(b.path(caCertFile), b.path(caKeyFile), certPEM, keyPEM); err != nil {
			return err
		}
		b.CACert, b.CAKey, b.CAPEM = ca, key, certPEM
	}
	b.CAPool = x509.NewCertPool()
	b.CAPool.AddCert(b.CACert)
	return nil
}

func (b *Bundle) loadOrCreateServing(hosts []string) error {
	certPEM, err1 := os.ReadFile(b.path(servingCertFile))
	keyPEM, err2 := os.ReadFile(b.path(servingKeyFile))
	if err1 == nil && err2 == nil {
		cert, _, err := parsePair(certPEM, keyPEM)
		if err == nil && covers(cert, hosts) && time.Until(cert.NotAfter) > 30*24*time.Hour && cert.CheckSignatureFrom(b.CACert) == nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err == nil {
				b.Serving = pair
				return nil
			}
		}
	}
	certPEM, keyPEM, err := b.Issue("kube-apiserver", nil, hosts, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	if err := b.writePair(b.path(servingCertFile), b.path(servingKeyFile), certPEM, keyPEM); err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	b.Serving = pair
	return nil
}

// covers reports whether cert names every host.
func covers(cert *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(cert.IPAddresses, func(x net.IP) bool { return x.Equal(ip) }) {
				return false
			}
		} else if !slices.Contains(cert.DNSNames, h) {
			return false
		}
	}
	return true
}

// Issue signs a new certificate and key with the CA, both PEM. For a
// client certificate, commonName is the user and orgs its groups.
func (b *Bundle) Issue(commonName string, orgs []string, hosts []string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.CACert, &key.PublicKey, b.CAKey)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: certutil.CertificateBlockType, Bytes: der}), keyPEM, nil
}

// IssueClient returns a PEM client certificate and key for user.
func (b *Bundle) IssueClient(user string, groups []string) (certPEM, keyPEM []byte, err error) {
	return b.Issue(user, groups, nil, x509.ExtKeyUsageClientAuth)
}

func (b *Bundle) loadOrCreateToken() error {
	data, err := os.ReadFile(b.TokenFile)
	if err == nil && len(strings.TrimSpace(string(data))) >= 32 {
		b.Token = strings.TrimSpace(string(data))
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading the admin token %s: %w", b.TokenFile, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	b.Token = hex.EncodeToString(raw)
	return b.writeFile(b.TokenFile, []byte(b.Token+"\n"), 0o600)
}

// loadOrCreateServiceAccountKey loads sa.key, or makes it (and sa.pub, its
// public key) once: tokens stay valid across restarts as long as it stays.
func (b *Bundle) loadOrCreateServiceAccountKey() error {
	path := b.path(saKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := keyutil.ParsePrivateKeyPEM(data)
		if err != nil {
			return fmt.Errorf("reading the service-account key %s: %w (remove it to have a new one made; tokens signed with it stop working)", path, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return fmt.Errorf("the service-account key %s is a %T; want an ECDSA or RSA private key", path, k)
		}
		b.ServiceAccountKey = signer
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading the service-account key %s: %w", path, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := b.writeFile(path, keyPEM, 0o600); err != nil {
		return err
	}
	if err := b.writeFile(b.path(saPubFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return err
	}
	b.ServiceAccountKey = key
	return nil
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	k, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("the key is a %T, not an ECDSA key", k)
	}
	return certs[0], key, nil
}

func (b *Bundle) writePair(certPath, keyPath string, certPEM, keyPEM []byte) error {
	if err := b.writeFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return b.writeFile(certPath, certPEM, 0o644)
}

// writeFile writes a file of the bundle atomically, synced unless
// Options.NoSync.
func (b *Bundle) writeFile(path string, data []byte, perm os.FileMode) error {
	if b.noSync {
		return atomicfile.WriteUnsynced(path, data, perm)
	}
	return atomicfile.Write(path, data, perm)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// ClientTLS returns a client TLS config that presents a certificate for user
// (signed by the CA) and trusts the CA: how the API server reaches agents.
func (b *Bundle) ClientTLS(user string, groups []string) (*tls.Config, error) {
	certPEM, keyPEM, err := b.IssueClient(user, groups)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: b.CAPool, MinVersion: tls.VersionTLS12}, nil
}

// AgentServerTLS returns the serving TLS config of a node agent's streaming
// server: a certificate for hosts, and client certificates required and
// verified against the CA (only the API server holds one).
func (b *Bundle) AgentServerTLS(hosts []string) (*tls.Config, error) {
	certPEM, keyPEM, err := b.Issue("headway-agent", nil, hosts, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: b.CAPool, MinVersion: tls.VersionTLS12}, nil
}
