package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

func TestParseClosePayload(t *testing.T) {
	cases := []struct {
		name    string
		payload []byte
		code    ws.StatusCode
		reason  string
		err     error
	}{
		{"RFC 6455 5.5.1 empty payload", nil, ws.StatusNoStatusRcvd, "", nil},
		{"RFC 6455 5.5.1 one byte", []byte{0x03}, 0, "", ErrCloseTooShort},
		{"code without reason", closePayload(1000, ""), 1000, "", nil},
		{"code and reason", closePayload(1001, "going away"), 1001, "going away", nil},
		{"RFC 6455 5.5 reason of 123 bytes", closePayload(4999, strings.Repeat("r", 123)), 4999, strings.Repeat("r", 123), nil},
		{"RFC 6455 8.1 reason in UTF-8", closePayload(3000, "κόσμε"), 3000, "κόσμε", nil},
		{"RFC 6455 5.5.1 reason not UTF-8", closePayload(1000, "\xff\xfe"), 1000, "", ErrInvalidUTF8},
		{"RFC 6455 5.5.1 reason with a surrogate", closePayload(1000, "\xed\xa0\x80"), 1000, "", ErrInvalidUTF8},
		{"RFC 6455 5.5.1 reason cut inside a character", closePayload(1000, "\xce"), 1000, "", ErrInvalidUTF8},
		{"RFC 6455 7.4.2 code 0", closePayload(0, ""), 0, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.2 code 999", closePayload(999, ""), 999, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.1 code 1004 reserved", closePayload(1004, ""), 1004, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.1 code 1005 not on the wire", closePayload(1005, ""), 1005, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.1 code 1006 not on the wire", closePayload(1006, ""), 1006, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.1 code 1015 not on the wire", closePayload(1015, ""), 1015, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.2 code 1016 unassigned", closePayload(1016, ""), 1016, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.2 code 2999 unassigned", closePayload(2999, ""), 2999, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.2 code 5000", closePayload(5000, ""), 5000, "", ErrInvalidCloseCode},
		{"RFC 6455 7.4.2 code 65535", closePayload(65535, ""), 65535, "", ErrInvalidCloseCode},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClosePayload(tc.payload)
			if code != tc.code || string(reason) != tc.reason || err != tc.err {
				t.Fatalf("ParseClosePayload(%x) = %d, %q, %v; want %d, %q, %v",
					tc.payload, code, reason, err, tc.code, tc.reason, tc.err)
			}
			if len(reason) > 0 && &reason[0] != &tc.payload[2] {
				t.Fatal("reason does not alias the payload")
			}
		})
	}
}

func TestValidReceivedCloseCode(t *testing.T) {
	// Every boundary of every range.
	valid := map[ws.StatusCode]bool{
		0: false, 999: false, 1000: true, 1001: true, 1002: true, 1003: true, 1004: false,
		1005: false, 1006: false, 1007: true, 1011: true, 1012: true, 1013: true, 1014: true,
		1015: false, 1016: false, 2000: false, 2999: false, 3000: true, 3999: true,
		4000: true, 4999: true, 5000: false, 65535: false,
	}
	for code, want := range valid {
		if got := ValidReceivedCloseCode(code); got != want {
			t.Errorf("ValidReceivedCloseCode(%d) = %v, want %v", code, got, want)
		}
		_, _, err := ParseClosePayload(closePayload(uint16(code), ""))
		if (err == nil) != want {
			t.Errorf("ParseClosePayload with code %d: %v", code, err)
		}
	}
}

func TestCloseCodeOf(t *testing.T) {
	cases := []struct {
		err  error
		want ws.StatusCode
	}{
		{nil, 0},
		{errors.New("other"), 0},
		{ErrUnmasked, 1002},
		{ErrCloseTooShort, 1002},
		{ErrInvalidUTF8, 1007},
		{fmt.Errorf("wrapped: %w", ErrInvalidCloseCode), 1002},
		{&ProtocolError{Reason: "no code"}, 1002},
		{&ProtocolError{Code: ws.StatusPolicyViolation}, 1008},
	}
	for _, tc := range cases {
		if got := CloseCodeOf(tc.err); got != tc.want {
			t.Errorf("CloseCodeOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if !strings.Contains(ErrInvalidUTF8.Error(), "1007") || !bytes.Contains([]byte(errMissingHost.Error()), []byte("400")) {
		t.Errorf("Error texts: %q, %q", ErrInvalidUTF8, errMissingHost)
	}
}
