package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// saved is what -json writes: every figure of a run and what the report
// says of its setup, so that -render prints the same report later, on
// any machine.
type saved struct {
	Command string          `json:"command"`
	Date    time.Time       `json:"date"` // UTC, when the run began
	Took    dur             `json:"took"`
	Load    string          `json:"load"` // /proc/loadavg's first three fields when the run began
	Machine runinfo.Machine `json:"machine"`
	Setup   setup           `json:"setup"`
	Servers []serverInfo    `json:"servers"`
	FD      []fdResult      `json:"fdflood,omitempty"`
	Ping    []pingResult    `json:"pingflood,omitempty"`
	TLS     []tlsResult     `json:"tlsflood,omitempty"`
}

// setup is the flags a run's figures depend on.
type setup struct {
	Quick            bool  `json:"quick"`
	Nofile           int   `json:"nofile"`
	HandshakeTimeout dur   `json:"handshake_timeout"`
	Conns            int   `json:"conns"`
	PerWorker        int   `json:"per_worker"`
	DialConc         int   `json:"dial_concurrency"`
	DialTimeout      dur   `json:"dial_timeout"`
	DialPhase        dur   `json:"dial_phase"`
	Hold             dur   `json:"hold"`
	RecoverTimeout   dur   `json:"recover_timeout"`
	ProbeTimeout     dur   `json:"probe_timeout"`
	PingBytes        int64 `json:"ping_bytes"`
	PingBatch        int   `json:"ping_batch"`
	PingTimeout      dur   `json:"ping_timeout"`
	Stall            dur   `json:"stall"`
	Settle           dur   `json:"settle"`
	TLSHolders       int   `json:"tls_holders"`
	TLSHoldersHello  bool  `json:"tls_holders_hello"`
	TLSFloodBytes    int64 `json:"tls_flood_bytes"`
	TLSFloodSockets  []int `json:"tls_flood_sockets"`
	TLSFloodTimeout  dur   `json:"tls_flood_timeout"`
	TLSProbeAt       int64 `json:"tls_probe_at"`
	TLSEchoConns     int   `json:"tls_echo_conns"`
}

// thisSetup is the setup the flags ask for.
func thisSetup(floodSockets []int) setup {
	return setup{
		Quick: *quick, Nofile: *nofile, HandshakeTimeout: dur(*handshake),
		Conns: *conns, PerWorker: *perWorker, DialConc: *dialConc, DialTimeout: dur(*dialTimeout), DialPhase: dur(*dialPhase),
		Hold: dur(*hold), RecoverTimeout: dur(*recoverTimeout), ProbeTimeout: dur(*probeTimeout),
		PingBytes: *pingBytes, PingBatch: *pingBatchSize, PingTimeout: dur(*pingTimeout), Stall: dur(*stall), Settle: dur(*settle),
		TLSHolders: *tlsHolders, TLSHoldersHello: *tlsHello, TLSFloodBytes: *tlsFloodBytes, TLSFloodSockets: floodSockets,
		TLSFloodTimeout: dur(*tlsFloodTime), TLSProbeAt: *tlsProbeAt, TLSEchoConns: *tlsEchoConns,
	}
}

// dur is a time.Duration that JSON shows as "1m0s".
type dur time.Duration

func (d dur) String() string               { return time.Duration(d).String() }
func (d dur) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
func (d *dur) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = dur(v)
	return err
}

// write saves sv as indented JSON.
func (sv *saved) write(path string) error { return runinfo.WriteJSON(path, sv) }

// load reads a run saved by write.
func load(path string) (*saved, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sv saved
	if err := json.Unmarshal(b, &sv); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if sv.Command == "" || sv.Date.IsZero() {
		return nil, fmt.Errorf("%s: not a run saved by cmd/faults (no command or date)", path)
	}
	return &sv, nil
}

// failures lists the runs that could not be done (a build, a start, a
// dial that the tool itself needed), as "scenario server: why".
func (sv *saved) failures() []string {
	var out []string
	for _, x := range sv.FD {
		if x.Failure != "" {
			out = append(out, "fdflood "+x.Server+": "+x.Failure)
		}
	}
	for _, x := range sv.Ping {
		if x.Failure != "" {
			out = append(out, "pingflood "+x.Server+": "+x.Failure)
		}
	}
	for _, x := range sv.TLS {
		if x.Failure != "" {
			out = append(out, fmt.Sprintf("tlsflood %s (%d sockets): %s", x.Server, x.Sockets, x.Failure))
		}
	}
	return out
}
