package devcert

import (
	"crypto/x509"
	"flag"
	"os"
	"testing"
)

// A self-signed configuration serves 127.0.0.1 and localhost; a certificate
// without its key (or the reverse) is refused.
func TestConfig(t *testing.T) {
	cfg, err := Config("", "")
	if err != nil {
		t.Fatal(err)
	}
	leaf := cfg.Certificates[0].Leaf
	for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("key usage %v", leaf.ExtKeyUsage)
	}
	if _, err := Config("cert.pem", ""); err == nil {
		t.Error("a certificate without a key was accepted")
	}
}

// Without -tls, Flags asks for no option; with it, for one (WithTLS).
func TestFlags(t *testing.T) {
	saved := flag.CommandLine
	defer func() { flag.CommandLine = saved }()
	for _, c := range []struct {
		args []string
		opts int
	}{{nil, 0}, {[]string{"-tls"}, 1}} {
		flag.CommandLine = flag.NewFlagSet(os.Args[0], flag.ContinueOnError)
		opts := Flags()
		if err := flag.CommandLine.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		got, err := opts()
		if err != nil || len(got) != c.opts {
			t.Errorf("%v: %d options, %v; want %d", c.args, len(got), err, c.opts)
		}
	}
}
