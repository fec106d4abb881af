// Package devcert gives the examples (and a program started from one) their
// TLS configuration: a certificate and key from files, or, for development,
// a self-signed certificate made in memory for localhost, 127.0.0.1 and ::1
// (browsers warn about it; tests and clients that trust it by hand accept
// it). It is public so that an example copied into a module of one's own
// still builds; production servers load their real certificate with
// Config or build their own tls.Config.
package devcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"math/big"
	"net"
	"time"

	"github.com/wsloop/wsloop/engine"
)

// Flags defines -tls, -tls-cert and -tls-key on the command line's flag
// set; after flag.Parse, the function it returns gives the engine options
// they ask for: none, or engine.WithTLS with the files' certificate or a
// self-signed one.
func Flags() func() ([]engine.Option, error) {
	useTLS := flag.Bool("tls", false, "speak TLS (wss://, https://); implied by -tls-cert")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); without it, -tls makes a self-signed one")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	return func() ([]engine.Option, error) {
		if !*useTLS && *certFile == "" {
			return nil, nil
		}
		cfg, err := Config(*certFile, *keyFile)
		if err != nil {
			return nil, err
		}
		return []engine.Option{engine.WithTLS(cfg)}, nil
	}
}

// Config returns a server TLS configuration from certFile and keyFile (PEM),
// or with a new self-signed certificate when both are empty.
func Config(certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("devcert: need both a certificate and a key file, or neither")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	}
	cert, err := SelfSigned()
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
}

// SelfSigned makes an ECDSA P-256 certificate for localhost, 127.0.0.1
// and ::1, valid for a week.
func SelfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "wsloop self-signed (development only)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
