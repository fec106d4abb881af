// Package benchcert gives a benchmark run its TLS certificate: made for
// the run (devcert's self-signed ECDSA P-256 for localhost,
// 127.0.0.1 and ::1), written as PEM files that every server takes with
// -tls-cert and -tls-key, and the client configuration that trusts it and
// offers every server the same: TLS 1.3, X25519, ALPN http/1.1.
package benchcert

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/wsloop/wsloop/devcert"
)

// Write makes a certificate and its key and writes them to dir as
// cert.pem and key.pem (mode 0600). Safe for concurrent use with distinct
// dirs.
func Write(dir string) (certFile, keyFile string, err error) {
	cert, err := devcert.SelfSigned()
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// ClientConfig returns the configuration a client dials addr (host:port)
// with: it trusts the certificate in caFile (PEM) alone, names the host,
// and asks for TLS 1.3 with X25519 and ALPN http/1.1, without a session
// cache (every handshake a full one; set ClientSessionCache to resume).
// X25519 alone because Go's default also offers the post-quantum hybrid,
// which nbio's older fork of crypto/tls does not know, and every server
// must do the same work. Safe for concurrent use; the result is the
// caller's.
func ClientConfig(caFile, addr string) (*tls.Config, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		RootCAs:          pool,
		ServerName:       host,
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519},
		NextProtos:       []string{"http/1.1"},
	}, nil
}
