package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// sample is a saved run with every field set (even those a real run
// leaves zero, as the single node's bus counters, so that the JSON round
// trip checks every field), and no setting at its flag's default, so that
// a report that read a flag instead of the run shows it.
func sample() *saved {
	fan := func(subs int, pubs uint64) fanoutResult {
		return fanoutResult{Subscribers: subs, Size: 128, Inflight: 8, Publishes: pubs, Delivered: pubs * uint64(subs), DurationS: 4.5,
			DeliveredPerS: float64(pubs) * float64(subs) / 4.5, PublishesPerS: float64(pubs) / 4.5, P50us: 1500, P99us: 2500, MaxUs: 3100,
			Errors: 0, LoadgenCPUS: 3.25, Reader: "epoll", Sent: pubs + 2, NextMin: pubs + 2, NextMax: pubs + 2}
	}
	return &saved{
		Tool: savedTool, Args: []string{"-subs", "300", "-out", "RESULTS.md", "-server-cpu", "0 1"},
		Date: time.Date(2026, 11, 28, 8, 5, 0, 0, time.UTC), Took: dur(95 * time.Second), Load: "1.50 0.75 0.25",
		Machine: runinfo.Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.18", Go: "go1.26.8"},
		Tree:    runinfo.Tree{Dir: "/r", Commit: "e43f17e0123456789abcdef0123456789abcdef0", Uncommitted: 3},
		Setup:   setup{Quick: true, Nodes: 2, Subs: 300, Size: 128, Inflight: 8, Duration: dur(4500 * time.Millisecond), ServerCPU: "0 1", LoadCPUs: "3"},
		Runs: []result{
			{Nodes: 1, Inflight: 8, SubsPerNode: 300, Subscribers: 300, Publishes: 900, Deliveries: 270000, DurationS: 4.5, DeliveredPerS: 60000,
				P50us: 1234, P99us: 5678, PhaseS: 4.75, ServerCPUS: 0.54, CPUByProc: map[string]float64{"node1": 0.54}, RSSByProc: map[string]int64{"node1": 20 << 20},
				Bus: varz{1, 1, 1, 1}, PresencePerS: [2]float64{1, 1}, BusPresence: varz{1, 1, 1, 1}, Clients: []fanoutResult{fan(300, 900)}},
			{Nodes: 2, Inflight: 8, SubsPerNode: 300, Subscribers: 600, Publishes: 450, Deliveries: 270000, DurationS: 4.5, DeliveredPerS: 60000,
				P50us: 2345, P99us: 6789, PhaseS: 4.8, ServerCPUS: 1.08,
				CPUByProc: map[string]float64{"nats": 0.04, "node1": 0.52, "node2": 0.52}, RSSByProc: map[string]int64{"nats": 16 << 20, "node1": 30 << 20, "node2": 31 << 20},
				Bus:          varz{InMsgs: 460, OutMsgs: 919, InBytes: 60000, OutBytes: 120000},
				PresencePerS: [2]float64{2, 4}, BusPresence: varz{InMsgs: 10, OutMsgs: 19, InBytes: 1, OutBytes: 1},
				Clients: []fanoutResult{fan(300, 450), fan(299, 450)}},
		},
	}
}

// unset lists the fields of v (a struct, walked into its structs, maps,
// slices and arrays) that hold their zero value, by path.
func unset(v reflect.Value, path string) []string {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			break
		}
		var out []string
		for i := range v.NumField() {
			out = append(out, unset(v.Field(i), path+"."+v.Type().Field(i).Name)...)
		}
		return out
	case reflect.Slice, reflect.Array, reflect.Map:
		if v.Len() == 0 {
			return []string{path}
		}
		var out []string
		if v.Kind() == reflect.Map {
			for _, k := range v.MapKeys() {
				out = append(out, unset(v.MapIndex(k), path+"["+k.String()+"]")...)
			}
			return out
		}
		for i := range v.Len() {
			out = append(out, unset(v.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	if v.IsZero() {
		return []string{path}
	}
	return nil
}

// differ lists where got and want (values of one type, walked as unset
// walks them) differ, as "path: got, want want".
func differ(got, want reflect.Value, path string) []string {
	switch want.Kind() {
	case reflect.Struct:
		if want.Type() == reflect.TypeFor[time.Time]() {
			break
		}
		var out []string
		for i := range want.NumField() {
			out = append(out, differ(got.Field(i), want.Field(i), path+"."+want.Type().Field(i).Name)...)
		}
		return out
	case reflect.Slice, reflect.Array:
		if got.Len() != want.Len() {
			return []string{fmt.Sprintf("%s: %d elements, want %d", path, got.Len(), want.Len())}
		}
		var out []string
		for i := range want.Len() {
			out = append(out, differ(got.Index(i), want.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	if !reflect.DeepEqual(got.Interface(), want.Interface()) {
		return []string{fmt.Sprintf("%s: %v, want %v", path, got.Interface(), want.Interface())}
	}
	return nil
}

// TestRenderSaved checks that a saved run renders its own figures and
// setup (not the flags'), that it comes back from its JSON unchanged and
// renders into the same report, that -render writes that report between
// the markers, and that a .json of another command is refused.
func TestRenderSaved(t *testing.T) {
	sv := sample()
	// Every field set: a field the JSON drops then fails the round trip.
	// (fanoutResult.Errors is zero in any run that got a report.)
	// The fields of -history's runs are checked by TestRenderHistory.
	for _, p := range unset(reflect.ValueOf(*sv), "saved") {
		if !strings.HasSuffix(p, ".Errors") && !strings.HasSuffix(p, ".History") && !strings.HasSuffix(p, ".Rounds") &&
			!strings.HasSuffix(p, ".Round") && !strings.HasSuffix(p, ".JetStream") {
			t.Errorf("sample leaves %s unset: the round trip would not check it", p)
		}
	}
	md := sv.markdown()
	for _, want := range []string{
		"**Quick smoke run**",
		"`cd benchmarks && go run ./cmd/cluster -subs 300 -out RESULTS.md -server-cpu '0 1'` at e43f17e + 3 uncommitted paths, run of 2026-11-28 08:05 UTC (took 1m35s, load average 1.50 0.75 0.25 at the start); Test CPU, 2 cores, Linux 6.18, go1.26.8; servers",
		`pinned to CPU "0 1", clients to "3".`,
		"One room, 128 B binary messages, one publisher on node 1 publishing for 4.5s; 300 subscribers on every node",
		"| single node, no broker | 300 | 8 | 60000 | 200 | 2.000 µs | 1.23 ms | 5.68 ms |",
		"| 2 nodes + NATS | 600 | 8 | 60000 | 100 | 4.000 µs | 2.35 ms | 6.79 ms |",
		"600 subscribers, 8 in flight, 450 publishes: server CPU over the measured phase by process: nats 0.04 s (RSS 16 MiB), node1 0.52 s (RSS 30 MiB), node2 0.52 s (RSS 31 MiB); NATS (its /varz): 460 messages in, 919 out (60000 and 120000 bytes), of which presence reports about 10 in and 19 out.",
		"**Bus traffic per publish: 1.000 messages in and 2.000 out** (133 and 267 bytes; 450 publishes, 1 nodes interested besides the publisher's",
		"(128 B of payload plus one opcode byte each).\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("report:\n%s", md)
	}

	dir := t.TempDir()
	path := jsonBeside(filepath.Join(dir, "R.md"), false)
	if filepath.Base(path) != "R-cluster.json" {
		t.Errorf("the .json beside R.md is %s", path)
	}
	if err := sv.write(path); err != nil {
		t.Fatal(err)
	}
	back, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range differ(reflect.ValueOf(*back), reflect.ValueOf(*sv), "saved") {
		t.Errorf("the JSON round trip changed %s", d)
	}
	if again := back.markdown(); again != md {
		t.Errorf("the report rendered from the JSON differs:\n%s\nwant:\n%s", again, md)
	}

	// -render FILE -out R.md: the same report on stdout and in its block.
	mdPath := filepath.Join(dir, "R.md")
	if err := os.WriteFile(mdPath, []byte("# R\n\n"+beginMarker+"\nold\n"+endMarker+"\n\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := rerender(path, mdPath, &stdout); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != md {
		t.Errorf("-render printed:\n%s\nwant:\n%s", stdout.String(), md)
	}
	if b, _ := os.ReadFile(mdPath); string(b) != "# R\n\n"+beginMarker+"\n"+md+endMarker+"\n\nkept\n" {
		t.Errorf("-render -out wrote:\n%s", b)
	}

	// Another command's .json: cmd/bench's has a date and runs too.
	for name, other := range map[string]string{
		"cmd/bench's":   `{"args": ["-quick"], "date": "2026-11-26T15:40:00Z", "took_ns": 1, "runs": [{"Scenario": "echo", "Server": "wsloop"}]}`,
		"cmd/faults's":  `{"command": "go run ./cmd/faults", "date": "2026-11-27T09:30:00Z", "servers": []}`,
		"a list":        `[{"scenario": "echo"}]`,
		"without runs":  `{"tool": "cmd/cluster", "date": "2026-11-27T09:30:00Z", "runs": []}`,
		"not even JSON": `# RESULTS`,
	} {
		p := filepath.Join(dir, "other.json")
		if err := os.WriteFile(p, []byte(other), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout.Reset()
		err := rerender(p, "", &stdout)
		if err == nil || !strings.Contains(err.Error(), "cmd/cluster") {
			t.Errorf("%s .json: error %v, want one that says it is not a run of cmd/cluster", name, err)
		} else {
			t.Logf("%s .json: %v", name, err)
		}
		if stdout.Len() > 0 {
			t.Errorf("%s .json: printed %q", name, stdout.String())
		}
	}
}

// historySample is a saved -history run: two rounds of the four setups.
func historySample() *saved {
	sv := sample()
	sv.Args = []string{"-history", "100", "-rounds", "2", "-subs", "300", "-out", "RESULTS.md"}
	sv.Setup.History, sv.Setup.Rounds, sv.Setup.Inflight = 100, 2, 8
	base := sv.Runs
	sv.Runs = nil
	for round := 1; round <= 2; round++ {
		for _, hist := range []int{0, 100} {
			for _, r := range base {
				r.History, r.Round = hist, round
				r.CPUByProc = map[string]float64{}
				for k, v := range base[0].CPUByProc {
					r.CPUByProc[k] = v
				}
				if r.Nodes > 1 {
					r.CPUByProc = map[string]float64{"nats": 0.04, "node1": 0.52, "node2": 0.52}
				}
				if hist > 0 {
					// History costs half as much again on every process.
					for k, v := range r.CPUByProc {
						r.CPUByProc[k] = v * 1.5
					}
					r.ServerCPUS *= 1.5
					if r.Nodes > 1 {
						r.JetStream = &jsz{Taken: 450, Messages: 100, Bytes: 12000, Consumers: 2, APITotal: 9, APIErrors: 0}
					}
				}
				r.P50us *= float64(round)
				sv.Runs = append(sv.Runs, r)
			}
		}
	}
	return sv
}

// TestRenderHistory checks -history's report, its JSON round trip, and
// that -render writes it between its own markers, leaving the cluster
// markers' block alone.
func TestRenderHistory(t *testing.T) {
	sv := historySample()
	md := sv.markdown()
	for _, want := range []string{
		"### Through JetStream, two nodes\n",
		"**Quick smoke run**",
		"`cd benchmarks && go run ./cmd/cluster -history 100 -rounds 2 -subs 300 -out RESULTS.md` at e43f17e",
		"in each of 2 round(s)",
		"| 2 nodes + NATS, no history (core NATS) | 600 | 100 | 2400.00 µs | 4.000 µs | (base) | 3.52 (2.35–4.69) ms | 6.79 ms | 1.000 / 2.000 | 133 / 267 |",
		"| 2 nodes + NATS, history 100 through JetStream | 600 | 100 | 3600.00 µs | 6.000 µs | 1.50 |",
		"| single node, no history | 300 | 200 | 600.00 µs | 2.000 µs | (base) |",
		"| single node, local history 100 | 300 | 200 | 900.00 µs | 3.000 µs | 1.50 | 1.85 (1.23–2.47) ms | 5.68 ms | — | — |",
		"- 2 nodes + NATS, history 100 through JetStream, 300 subscribers a node: nats 133.33, node1 1733.33, node2 1733.33.",
		"- single node, local history 100, 300 subscribers a node: node1 900.00.",
		"JetStream (NATS's /jsz), 300 subscribers a node, over the measured phases of the 2 rounds: 1.000 messages stored a publish, 0.0200 API requests a publish (0 errors); at the end of the last round the stream held 100 messages (12000 bytes), with 2 consumers.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("report:\n%s", md)
	}
	dir := t.TempDir()
	path := jsonBeside(filepath.Join(dir, "R.md"), true)
	if filepath.Base(path) != "R-cluster-history.json" {
		t.Errorf("the -history .json beside R.md is %s", path)
	}
	if err := sv.write(path); err != nil {
		t.Fatal(err)
	}
	back, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range differ(reflect.ValueOf(*back), reflect.ValueOf(*sv), "saved") {
		t.Errorf("the JSON round trip changed %s", d)
	}
	mdPath := filepath.Join(dir, "R.md")
	before := "# R\n\n" + beginMarker + "\ncluster\n" + endMarker + "\n\n" + histBeginMarker + "\nold\n" + histEndMarker + "\n\nkept\n"
	if err := os.WriteFile(mdPath, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := rerender(path, mdPath, &stdout); err != nil {
		t.Fatal(err)
	}
	want := "# R\n\n" + beginMarker + "\ncluster\n" + endMarker + "\n\n" + histBeginMarker + "\n" + md + histEndMarker + "\n\nkept\n"
	if b, _ := os.ReadFile(mdPath); string(b) != want {
		t.Errorf("-render -out wrote:\n%s", b)
	}
}
