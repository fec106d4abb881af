package wstest

import (
	"fmt"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
)

// Outcome is an Autobahn case verdict, spelled as in the suite's reports.
type Outcome string

// Outcomes of case.py.
const (
	OutcomeOK             Outcome = "OK"
	OutcomeNonStrict      Outcome = "NON-STRICT"
	OutcomeFailed         Outcome = "FAILED"
	OutcomeWrongCode      Outcome = "WRONG CODE"
	OutcomeUnclean        Outcome = "UNCLEAN"
	OutcomeFailedByClient Outcome = "FAILED BY CLIENT"
	OutcomeInformational  Outcome = "INFORMATIONAL"
	OutcomeUnimplemented  Outcome = "UNIMPLEMENTED"
)

// Result is the verdict on one case.
type Result struct {
	ID          string
	Description string
	// Behavior judges what the client received (OK, NON-STRICT, FAILED,
	// INFORMATIONAL); BehaviorClose judges how the connection ended (OK,
	// FAILED, UNCLEAN, WRONG CODE, FAILED BY CLIENT, INFORMATIONAL).
	Behavior      Outcome
	BehaviorClose Outcome
	Result        string // the suite's explanation of Behavior
	ResultClose   string // the suite's explanation of BehaviorClose
	Detail        string // what happened on the wire
	Duration      time.Duration
}

// Passed reports whether both verdicts are OK (or the case is only
// informational). NON-STRICT and FAILED BY CLIENT do not pass.
func (r Result) Passed() bool {
	ok := func(o Outcome) bool { return o == OutcomeOK || o == OutcomeInformational }
	return ok(r.Behavior) && ok(r.BehaviorClose)
}

// String reads "case 6.4.3: OK", or names both verdicts and the details.
func (r Result) String() string {
	if r.Behavior == r.BehaviorClose && r.Behavior == OutcomeOK {
		return fmt.Sprintf("case %s: OK (%v)", r.ID, r.Duration.Round(time.Millisecond))
	}
	return fmt.Sprintf("case %s: %s / close %s (%v)\n  %s\n  result: %s\n  close: %s\n  %s",
		r.ID, r.Behavior, r.BehaviorClose, r.Duration.Round(time.Millisecond),
		r.Description, r.Result, r.ResultClose, r.Detail)
}

// CaseInfo names one Autobahn case.
type CaseInfo struct {
	ID          string // "6.4.3"
	Description string // the suite's DESCRIPTION, HTML removed
}

// AutobahnCases lists the cases RunAutobahn knows, in the suite's order.
func AutobahnCases() []CaseInfo {
	var out []CaseInfo
	for _, c := range allCases() {
		out = append(out, CaseInfo{ID: c.id, Description: c.desc})
	}
	return out
}

// abCase is one case: its id, description and onOpen. onOpen sets the
// expectations, sends, and arms timers; it may install the session's
// onMessage and onLost hooks where the Python class overrides them.
type abCase struct {
	id   string
	desc string
	open func(s *session)
}

func allCases() []abCase {
	var cs []abCase
	for _, section := range [][]abCase{
		cases1(), cases2(), cases3(), cases4(), cases5(),
		cases6(), cases6UTF8(), cases7(), cases9(), cases10(), cases12(), cases13(),
	} {
		cs = append(cs, section...)
	}
	return cs
}

// Option configures RunAutobahn.
type Option func(*runConfig)

type runConfig struct {
	addr        string
	dial        []DialOption
	only        []string
	skip        []string
	tolerate    []string
	killTimeout time.Duration
	chopDelay   time.Duration
	parallel    int
	caseLimit   time.Duration
	report      func(Result)

	compressCount int // messages per compression case; 0 leaves sections 12 and 13 out
}

// WithCompressionCases adds sections 12 and 13 (permessage-deflate), each
// case sending count messages (the suite sends 1,000). The server must
// accept permessage-deflate; a case it declines is UNIMPLEMENTED, which
// does not pass.
func WithCompressionCases(count int) Option {
	return func(c *runConfig) { c.compressCount = count }
}

// WithCases runs only the cases matching one of the patterns ("6.4.*",
// "1.1.1"; path.Match syntax, so "6.*" covers 6.4.3). Default: all.
func WithCases(patterns ...string) Option {
	return func(c *runConfig) { c.only = append(c.only, patterns...) }
}

// WithSkip leaves out the cases matching one of the patterns.
func WithSkip(patterns ...string) Option {
	return func(c *runConfig) { c.skip = append(c.skip, patterns...) }
}

// WithoutPerformance leaves out section 9 (large messages, many messages).
func WithoutPerformance() Option { return WithSkip("9.*") }

// WithTolerated runs the cases matching the patterns but only logs their
// failures (for peers with known deviations).
func WithTolerated(patterns ...string) Option {
	return func(c *runConfig) { c.tolerate = append(c.tolerate, patterns...) }
}

// WithKillTimeout replaces the delay of every killAfter, after which the
// client gives up on the server and drops the connection (FAILED BY
// CLIENT). Default: the suite's own, 0.5 s to 10 s depending on the case.
// Waits that are part of a case (continueLater, closeAfter) are unchanged.
func WithKillTimeout(d time.Duration) Option { return func(c *runConfig) { c.killTimeout = d } }

// WithChopDelay sets the pause after each chopped or sync write, Autobahn's
// re-entry into its reactor between chops. Default 10 µs.
func WithChopDelay(d time.Duration) Option { return func(c *runConfig) { c.chopDelay = d } }

// WithParallel sets how many cases outside section 9 run at once. Section 9
// runs one case at a time after them. Default 32.
func WithParallel(n int) Option { return func(c *runConfig) { c.parallel = max(n, 1) } }

// WithCaseLimit bounds one case whatever the server does; section 9's
// closeAfter waits are capped at half of it. Default 60 s.
func WithCaseLimit(d time.Duration) Option { return func(c *runConfig) { c.caseLimit = d } }

// WithDialOptions passes options to Dial (path, headers) for every case.
func WithDialOptions(opts ...DialOption) Option {
	return func(c *runConfig) { c.dial = append(c.dial, opts...) }
}

// WithReport calls fn with every case's result; calls are serialized.
func WithReport(fn func(Result)) Option { return func(c *runConfig) { c.report = fn } }

func matchAny(patterns []string, id string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, id); ok || p == id {
			return true
		}
	}
	return false
}

// RunAutobahn runs the Autobahn TestSuite cases 1.* to 10.* (and the
// compression cases 12.* and 13.* with WithCompressionCases) against the echo
// server at addr ("host:port"), one subtest per case named by its id. The
// server must echo every message with its opcode, answer pings and run the
// closing handshake. A case passes when both verdicts are OK; NON-STRICT,
// UNCLEAN, WRONG CODE and FAILED BY CLIENT fail it.
//
// Cases outside sections 9, 12 and 13 run concurrently (WithParallel), each
// on its own connection with the suite's own waits; the heavy sections then
// run one case at a time, as in the suite, so that a case's one-second
// closing handshake is not queued behind 31 others' compression. The concurrent subtests are started from goroutines rather than
// with t.Parallel, so -test.parallel (GOMAXPROCS by default) does not
// serialize the suite's one-second waits. RunAutobahn returns when every
// case has finished; call it from the test's own goroutine. Each subtest
// logs its Result ("case 6.4.3: OK"), and a failing one reports the
// verdicts, the events received and how the connection ended.
func RunAutobahn(t *testing.T, addr string, opts ...Option) {
	t.Helper()
	cfg := &runConfig{addr: addr, chopDelay: 10 * time.Microsecond, parallel: 32, caseLimit: time.Minute}
	for _, o := range opts {
		o(cfg)
	}
	var mu sync.Mutex
	report := func(r Result) {
		if cfg.report != nil {
			mu.Lock()
			defer mu.Unlock()
			cfg.report(r)
		}
	}
	var light, heavy []abCase
	for _, c := range allCases() {
		if (len(cfg.only) > 0 && !matchAny(cfg.only, c.id)) || matchAny(cfg.skip, c.id) ||
			(cfg.compressCount == 0 && len(offersFor(c.id)) > 0) {
			continue
		}
		if strings.HasPrefix(c.id, "9.") || len(offersFor(c.id)) > 0 {
			heavy = append(heavy, c)
		} else {
			light = append(light, c)
		}
	}
	sem := make(chan struct{}, cfg.parallel)
	var wg sync.WaitGroup
	for _, c := range light {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t.Run(c.id, func(t *testing.T) { checkCase(t, cfg, c, report) })
		}()
	}
	wg.Wait()
	for _, c := range heavy {
		t.Run(c.id, func(t *testing.T) { checkCase(t, cfg, c, report) })
	}
}

func checkCase(t *testing.T, cfg *runConfig, c abCase, report func(Result)) {
	r := runCase(cfg, c)
	report(r)
	switch {
	case r.Passed():
		t.Log(r)
	case matchAny(cfg.tolerate, c.id):
		t.Logf("tolerated failure: %s", r)
	default:
		t.Error(r)
	}
}

// runCase runs one case on a fresh connection and judges it.
func runCase(cfg *runConfig, c abCase) Result {
	start := time.Now()
	dial := cfg.dial
	offers := offersFor(c.id)
	if len(offers) > 0 {
		var list []string
		for _, o := range offers {
			list = append(list, o.String())
		}
		dial = append(dial[:len(dial):len(dial)], WithHeader("Sec-WebSocket-Extensions", strings.Join(list, ", ")))
	}
	conn, err := Dial(cfg.addr, dial...)
	var pmd *deflateState
	if err == nil && len(offers) > 0 {
		var bad string
		if pmd, bad = acceptResponse(conn.Response().Header.Values("Sec-WebSocket-Extensions"), offers); bad != "" {
			conn.Close()
			err = fmt.Errorf("wstest: %s", bad)
		}
	}
	if err != nil {
		return Result{
			ID: c.id, Description: c.desc,
			Behavior: OutcomeFailed, BehaviorClose: OutcomeFailed,
			Result:      "Actual events differ from any expected.",
			ResultClose: "The WebSocket opening handshake was never completed!",
			Detail:      err.Error(), Duration: time.Since(start),
		}
	}
	s := &session{
		cfg: cfg, c: conn, pmd: pmd,
		remoteCode: noCode,
		behavior:   OutcomeFailed, behaviorClose: OutcomeFailed,
		result:      "Actual events differ from any expected.",
		resultClose: "TCP connection was dropped without close handshake",
		txFrames:    map[byte]int{},
		in:          make(chan readItem, 16),
		calls:       make(chan func(), 16),
		done:        make(chan struct{}),
	}
	s.run(c.open)
	s.judge()
	if s.onLost != nil {
		s.onLost()
	}
	return Result{
		ID: c.id, Description: c.desc,
		Behavior: s.behavior, BehaviorClose: s.behaviorClose,
		Result: s.result, ResultClose: s.resultClose,
		Detail: s.detail(), Duration: time.Since(start),
	}
}

// detail describes the connection's end for a report.
func (s *session) detail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "received %v", s.received)
	if len(s.received) > 8 {
		b.Reset()
		fmt.Fprintf(&b, "received %d events, first %v", len(s.received), s.received[:8])
	}
	for _, e := range s.expected {
		fmt.Fprintf(&b, "; expected %s %v", e.name, e.events)
	}
	if s.remoteCode != noCode {
		fmt.Fprintf(&b, "; server close code %d %q", s.remoteCode, s.remoteReason)
	} else {
		b.WriteString("; no server close code")
	}
	fmt.Fprintf(&b, "; closedByMe=%t wasClean=%t droppedByMe=%t", s.closedByMe, s.wasClean, s.droppedByMe)
	if s.droppedByMe {
		b.WriteString("; the client dropped TCP")
	} else {
		fmt.Fprintf(&b, "; TCP ended: %s", s.end)
	}
	if s.notClean != "" && !s.wasClean {
		fmt.Fprintf(&b, " (%s)", s.notClean)
	}
	if s.violation != "" {
		fmt.Fprintf(&b, "; %s", s.violation)
	}
	return b.String()
}
