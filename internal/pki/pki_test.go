package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var hosts = []string{"localhost", "127.0.0.1", "kubernetes.default.svc", "198.19.0.1"}

func leaf(t *testing.T, c tls.Certificate) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func verify(t *testing.T, b *Bundle, cert *x509.Certificate, usage x509.ExtKeyUsage, host string) error {
	t.Helper()
	_, err := cert.Verify(x509.VerifyOptions{Roots: b.CAPool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	b, err := LoadOrCreate(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !b.CACert.IsCA || b.CACert.Subject.CommonName != "headway-ca" || b.CACert.CheckSignatureFrom(b.CACert) != nil {
		t.Fatalf("CA %v (IsCA %v) is not a self-signed CA", b.CACert.Subject, b.CACert.IsCA)
	}
	if time.Until(b.CACert.NotAfter) < 9*365*24*time.Hour || b.CACert.NotBefore.After(time.Now().Add(-30*time.Minute)) {
		t.Errorf("CA valid %v..%v, want from an hour ago for about ten years", b.CACert.NotBefore, b.CACert.NotAfter)
	}
	serving := leaf(t, b.Serving)
	for _, h := range hosts {
		if err := verify(t, b, serving, x509.ExtKeyUsageServerAuth, h); err != nil {
			t.Errorf("serving certificate for %s: %v", h, err)
		}
	}
	if err := verify(t, b, serving, x509.ExtKeyUsageServerAuth, "elsewhere.example"); err == nil {
		t.Error("serving certificate valid for a host not asked for")
	}
	if raw, err := hex.DecodeString(b.Token); err != nil || len(raw) != 32 {
		t.Errorf("token %q is not 32 random bytes in hex", b.Token)
	}
	for name, want := range map[string]os.FileMode{caCertFile: 0o644, caKeyFile: 0o600, servingCertFile: 0o644, servingKeyFile: 0o600, tokenFile: 0o600} {
		if got := mode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s has mode %v, want %v", name, got, want)
		}
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("the pki directory has mode %v, want 0700", got)
	}
	if data, _ := os.ReadFile(b.TokenFile); string(data) != b.Token+"\n" {
		t.Errorf("token file holds %q, want the token and a newline", data)
	}
	if !bytes.Equal(b.CAPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.CACert.Raw})) {
		t.Error("CAPEM is not the CA certificate")
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreate(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreate(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !first.CACert.Equal(second.CACert) || !first.CAKey.Equal(second.CAKey) || first.Token != second.Token ||
		!bytes.Equal(first.Serving.Certificate[0], second.Serving.Certificate[0]) {
		t.Fatal("a second start with the same hosts changed the CA, the serving certificate or the token")
	}
	// Fewer hosts are still covered: nothing reissued.
	third, err := LoadOrCreate(dir, hosts[:1])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Serving.Certificate[0], third.Serving.Certificate[0]) {
		t.Error("the serving certificate was reissued for a subset of its hosts")
	}
}

// TestNoSyncWritesTheSameFiles: a PKI written without syncs (NoSync) is
// read back the same by a default LoadOrCreate, with no temporary files
// left.
func TestNoSyncWritesTheSameFiles(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateWith(dir, hosts, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreate(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !first.CACert.Equal(second.CACert) || !first.CAKey.Equal(second.CAKey) || first.Token != second.Token ||
		!first.ServiceAccountKey.Public().(*ecdsa.PublicKey).Equal(second.ServiceAccountKey.Public()) ||
		!bytes.Equal(first.Serving.Certificate[0], second.Serving.Certificate[0]) {
		t.Fatal("the PKI written with NoSync did not read back the same")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestServingReissued(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, b *Bundle)
		hosts []string
	}{
		{name: "a new host", hosts: append([]string{"node-2.example", "192.0.2.7"}, hosts...)},
		{name: "near expiry", hosts: hosts, spoil: func(t *testing.T, b *Bundle) {
			writeServing(t, b, b.CACert, b.CAKey, time.Now().Add(10*24*time.Hour))
		}},
		{name: "signed by another CA", hosts: hosts, spoil: func(t *testing.T, b *Bundle) {
			other, err := LoadOrCreate(t.TempDir(), hosts)
			if err != nil {
				t.Fatal(err)
			}
			writeServing(t, b, other.CACert, other.CAKey, time.Now().AddDate(1, 0, 0))
		}},
		{name: "unreadable", hosts: hosts, spoil: func(t *testing.T, b *Bundle) {
			if err := os.WriteFile(filepath.Join(b.Dir, servingCertFile), []byte("garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b, err := LoadOrCreate(dir, hosts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.spoil != nil {
				tc.spoil(t, b)
			}
			again, err := LoadOrCreate(dir, tc.hosts)
			if err != nil {
				t.Fatal(err)
			}
			if !again.CACert.Equal(b.CACert) || again.Token != b.Token {
				t.Fatal("the CA or the token changed")
			}
			serving := leaf(t, again.Serving)
			if bytes.Equal(serving.Raw, leaf(t, b.Serving).Raw) {
				t.Fatal("the serving certificate was not reissued")
			}
			for _, h := range tc.hosts {
				if err := verify(t, again, serving, x509.ExtKeyUsageServerAuth, h); err != nil {
					t.Errorf("reissued certificate for %s: %v", h, err)
				}
			}
			if time.Until(serving.NotAfter) < 300*24*time.Hour {
				t.Errorf("reissued certificate expires %v", serving.NotAfter)
			}
			// And it is what the next start loads.
			onDisk, err := LoadOrCreate(dir, tc.hosts)
			if err != nil || !bytes.Equal(leaf(t, onDisk.Serving).Raw, serving.Raw) {
				t.Fatalf("the reissued certificate was not stored: %v", err)
			}
		})
	}
}

// writeServing stores a serving certificate for hosts signed by ca, valid
// until notAfter.
func writeServing(t *testing.T, b *Bundle, ca *x509.Certificate, caKey *ecdsa.PrivateKey, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{"localhost", "kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("198.19.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.writePair(filepath.Join(b.Dir, servingCertFile), filepath.Join(b.Dir, servingKeyFile),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreate(dir, hosts); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, caKeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreate(dir, hosts)
	if err == nil || !strings.Contains(err.Error(), "remove the pki directory") {
		t.Fatalf("err = %v, want an error that says how to start over", err)
	}
}

func TestToken(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		kept          bool
	}{
		{"an operator's token is kept (trimmed)", "  " + strings.Repeat("x", 40) + "\n\n", true},
		{"a too short token is replaced", "short\n", false},
		{"an empty file is replaced", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tokenFile), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := LoadOrCreate(dir, hosts)
			if err != nil {
				t.Fatal(err)
			}
			if kept := b.Token == strings.TrimSpace(tc.content); kept != tc.kept {
				t.Fatalf("token %q from file %q: kept %v, want %v", b.Token, tc.content, kept, tc.kept)
			}
			if !tc.kept && len(b.Token) != 64 {
				t.Fatalf("replacement token %q", b.Token)
			}
		})
	}
}

func TestIssueClient(t *testing.T) {
	b, err := LoadOrCreate(t.TempDir(), hosts)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := b.IssueClient("jane", []string{"system:masters", "dev"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	cert := leaf(t, pair)
	groups := append([]string(nil), cert.Subject.Organization...)
	slices.Sort(groups) // a DER SET: the order is not kept
	if cert.Subject.CommonName != "jane" || strings.Join(groups, ",") != "dev,system:masters" {
		t.Errorf("subject %v, want CN=jane O=system:masters,dev", cert.Subject)
	}
	if err := verify(t, b, cert, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if err := verify(t, b, cert, x509.ExtKeyUsageServerAuth, ""); err == nil {
		t.Error("a client certificate serves")
	}
	other, _, err := b.IssueClient("jane", nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other, certPEM) {
		t.Error("two issues gave the same certificate")
	}
}

// handshake runs a TLS handshake between the two configs over loopback
// and returns the server's and the client's error.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(conn, server)
		err = s.Handshake()
		if err == nil {
			_, err = io.ReadFull(s, make([]byte, 2))
		}
		done <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(conn, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		// Under TLS 1.3 a rejected client certificate shows on the client
		// only after the handshake: the server's alert ends the read.
		if _, clientErr = c.Write([]byte("hi")); clientErr == nil {
			_, clientErr = c.Read(make([]byte, 1))
			if errors.Is(clientErr, io.EOF) {
				clientErr = nil // the server read and closed: accepted
			}
		}
	}
	return <-done, clientErr
}

func TestAgentTLS(t *testing.T) {
	b, err := LoadOrCreate(t.TempDir(), hosts)
	if err != nil {
		t.Fatal(err)
	}
	server, err := b.AgentServerTLS([]string{"node-1", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := b.ClientTLS("kube-apiserver", []string{"system:masters"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client func() *tls.Config
		ok     bool
	}{
		{"the API server's client certificate", func() *tls.Config { c := client.Clone(); c.ServerName = "node-1"; return c }, true},
		{"by IP", func() *tls.Config { c := client.Clone(); c.ServerName = "127.0.0.1"; return c }, true},
		{"no client certificate", func() *tls.Config {
			return &tls.Config{RootCAs: b.CAPool, ServerName: "node-1", MinVersion: tls.VersionTLS12}
		}, false},
		{"a certificate from another CA", func() *tls.Config {
			other, err := LoadOrCreate(t.TempDir(), hosts)
			if err != nil {
				t.Fatal(err)
			}
			c, err := other.ClientTLS("kube-apiserver", nil)
			if err != nil {
				t.Fatal(err)
			}
			c.RootCAs, c.ServerName = b.CAPool, "node-1"
			return c
		}, false},
		{"a name the agent's certificate lacks", func() *tls.Config { c := client.Clone(); c.ServerName = "node-2"; return c }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr := handshake(t, server, tc.client())
			if ok := serr == nil && cerr == nil; ok != tc.ok {
				t.Fatalf("server: %v, client: %v; want success %v", serr, cerr, tc.ok)
			}
		})
	}
	if server.MinVersion != tls.VersionTLS12 || client.MinVersion != tls.VersionTLS12 {
		t.Error("TLS below 1.2 allowed")
	}
}

func TestServiceAccountKeyIsMadeOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	b1, err := LoadOrCreate(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	k1, ok := b1.ServiceAccountKey.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("service-account key %T, want ECDSA", b1.ServiceAccountKey)
	}
	if st, err := os.Stat(filepath.Join(dir, "sa.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("sa.key: %v %v, want mode 0600", st, err)
	}
	b2, err := LoadOrCreate(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if k2, _ := b2.ServiceAccountKey.(*ecdsa.PrivateKey); k2 == nil || !k1.Equal(k2) {
		t.Fatal("the service-account key changed across a reload: issued tokens would stop working")
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, "sa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pubPEM)
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil || !k1.PublicKey.Equal(pub) {
		t.Fatalf("sa.pub is not the key's public key (%v)", err)
	}
	os.WriteFile(filepath.Join(dir, "sa.key"), []byte("not a key"), 0o600)
	if _, err := LoadOrCreate(dir, hosts); err == nil || !strings.Contains(err.Error(), "sa.key") {
		t.Fatalf("a damaged sa.key: %v, want an error naming it", err)
	}
}
