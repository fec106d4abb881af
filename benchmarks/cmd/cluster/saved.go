package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/mdblock"
	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// savedTool is the saved run's Tool: a .json another command wrote (cmd/bench's
// RESULTS.json has a date and runs too) is refused by it.
const savedTool = "cmd/cluster"

// saved is the .json -out writes beside the markdown: every figure of a
// run, the cmd/fanout results they came from, and what the report says of
// the run's setup, so that -render prints the same report later, on any
// machine. The report is rendered from it alone.
type saved struct {
	Tool    string          `json:"tool"` // savedTool
	Args    []string        `json:"args"` // after go run ./cmd/cluster
	Date    time.Time       `json:"date"` // UTC, when the run began
	Took    dur             `json:"took"`
	Load    string          `json:"load"` // /proc/loadavg's first three fields when the run began
	Machine runinfo.Machine `json:"machine"`
	Tree    runinfo.Tree    `json:"tree"` // the repository NATS, the nodes and the clients were built from
	Setup   setup           `json:"setup"`
	Runs    []result        `json:"runs"`
}

// setup is the flags the run's figures depend on and the report quotes.
type setup struct {
	Quick     bool   `json:"quick"`
	Nodes     int    `json:"nodes"`
	Subs      int    `json:"subs"`
	Size      int    `json:"size"`
	Inflight  int    `json:"inflight"`
	Duration  dur    `json:"duration"`
	ServerCPU string `json:"server_cpu"`
	LoadCPUs  string `json:"load_cpus"`
	History   int    `json:"history,omitempty"` // -history: 0 for the usual runs
	Rounds    int    `json:"rounds,omitempty"`  // with -history
}

// thisSetup is the setup the flags ask for (after -quick).
func thisSetup() setup {
	su := setup{Quick: *quick, Nodes: *nodes, Subs: *subs, Size: *size, Inflight: *inflight, Duration: dur(*duration),
		ServerCPU: *serverCPU, LoadCPUs: *loadCPUs}
	if *history > 0 {
		su.History, su.Rounds = *history, *rounds
	}
	return su
}

// dur is a time.Duration that JSON shows as "10s".
type dur time.Duration

func (d dur) String() string               { return time.Duration(d).String() }
func (d dur) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
func (d *dur) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = dur(v)
	return err
}

// jsonBeside is the .json -out writes beside the markdown file md:
// RESULTS.md gets RESULTS-cluster.json (RESULTS.json is cmd/bench's), or
// with -history RESULTS-cluster-history.json.
func jsonBeside(md string, history bool) string {
	if history {
		return strings.TrimSuffix(md, filepath.Ext(md)) + "-cluster-history.json"
	}
	return strings.TrimSuffix(md, filepath.Ext(md)) + "-cluster.json"
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
		return nil, fmt.Errorf("%s: not a run saved by %s: %w", path, savedTool, err)
	}
	if sv.Tool != savedTool {
		return nil, fmt.Errorf("%s: not a run saved by %s (its \"tool\" is %q, not %q; -out FILE.md saves the run to FILE-cluster.json)", path, savedTool, sv.Tool, savedTool)
	}
	if sv.Date.IsZero() || len(sv.Runs) == 0 {
		return nil, fmt.Errorf("%s: a run saved by %s without a date or runs", path, savedTool)
	}
	return &sv, nil
}

// rerender writes the report of the run saved at path to stdout, and
// between the cluster markers of md when md is not empty.
func rerender(path, md string, stdout io.Writer) error {
	sv, err := load(path)
	if err != nil {
		return err
	}
	report := sv.markdown()
	if _, err := io.WriteString(stdout, report); err != nil {
		return err
	}
	if md != "" {
		begin, end := sv.markers()
		return mdblock.Write(md, begin, end, report)
	}
	return nil
}
