package engine

import (
	"fmt"
	"math"
	"time"

	"github.com/gobwas/ws"
)

// Per-connection inbound rate limits (WithRateLimit).
//
// Each limit is a GCRA (generic cell rate algorithm, the token bucket
// written as a time): a connection owes a debt, the time the server must
// wait before the messages it let through fit the rate again. A message
// costs its share of the rate (Per/Messages, and Per/Bytes per byte); it
// passes if the debt plus its cost stays within the burst (Burst messages'
// worth), and the debt is paid down by the time that passes. A message
// that does not pass is not charged, so a flood gets exactly the rate
// through.
//
// No timer and no timestamp of its own: the debts are kept as of the
// connection's last read (c.lastRead, stamped with the loop's coarse
// clock), and each read pays them down by the time since the previous one
// as it stamps the new one (stampRead). Two uint32 fields hold them, in
// units of 2^shift ns chosen per limit at New so that a full burst fits in
// 31 bits; with the run of refused messages (a byte of the reader) and the
// exemption (a bit of lflags), Conn stays in its 288-byte size class.

// RateLimitAction says what happens to a message over a connection's rate
// limit (WithRateLimit).
type RateLimitAction uint8

const (
	// RateLimitDrop drops the message: OnMessage does not see it,
	// Stats.RateLimited counts it and RateLimit.OnLimited, when set, is
	// told. The connection stays open.
	RateLimitDrop RateLimitAction = iota
	// RateLimitClose fails the connection with 1008 (policy violation):
	// OnClose gets a *CloseError wrapping ErrRateLimited, and what the peer
	// sends after is discarded until its close frame.
	RateLimitClose
)

// RateLimit is a limit on the data messages one connection may send: a
// rate (Messages, Bytes or both per Per) and a burst that may arrive at
// once after a quiet spell. Pass it to WithRateLimit.
type RateLimit struct {
	// Messages is how many messages a connection may send per Per; 0
	// leaves the count unlimited.
	Messages int
	// Bytes is how many payload bytes a connection may send per Per,
	// counted after decompression; 0 leaves bytes unlimited.
	Bytes int
	// Per is the period of Messages and Bytes. Default: 1 s.
	Per time.Duration
	// Burst is how many messages may arrive at once after a quiet spell.
	// Default: Messages. It is raised to two ticks' worth of the rate if
	// less (WithTick), because the loop's clock moves a tick at a time.
	Burst int
	// BurstBytes is how many payload bytes may arrive at once. Default:
	// Bytes, raised like Burst. It must be at least WithMaxMessageSize,
	// or the largest messages could never pass.
	BurstBytes int
	// Action says what happens to a message over the limit. Default:
	// RateLimitDrop.
	Action RateLimitAction
	// OnLimited, when set, is called on the event loop for each message
	// dropped by RateLimitDrop (not with RateLimitClose, which OnClose
	// reports). n is the number of messages dropped in a row, this one
	// included, since the last one that passed (it stops growing at 255):
	// answer only when n == 1 to tell a flooding client once.
	// retry is how long until a message like this one would pass, at the
	// latest (one tick of the loop's clock included). Like every callback
	// it must not block; a panic fails the connection with 1011.
	OnLimited func(c *Conn, n int, retry time.Duration)
}

// WithRateLimit limits the data messages each connection may send
// (RateLimit has the rate, the burst and what happens past them). It is
// enforced on the event loop once a whole message has arrived (and been
// inflated), before OnMessage, with the loop's clock: no timer, and no
// allocation, per connection. Control frames and WithAppHeartbeat's ping
// are not counted. Conn.SetRateLimited exempts a connection. Refused
// messages are counted in Stats.RateLimited, closes in
// Stats.RateLimitCloses. Default: no limit.
func WithRateLimit(r RateLimit) Option { return func(o *options) { o.rateLimit = &r } }

// SetRateLimited exempts the connection from WithRateLimit (on false) or
// subjects it to the limit again (on true, the default): a moderator's
// connection, say, marked from OnOpen with what the upgrade hook attached.
// It must be called on the event loop (from a Handler method).
func (c *Conn) SetRateLimited(on bool) {
	if on {
		c.lflags &^= lfRateExempt
	} else {
		c.lflags |= lfRateExempt
	}
}

// limiter is a RateLimit compiled for the loop (options.limiter).
type limiter struct {
	msgs, bytes bucket
	action      RateLimitAction
	onLimited   func(c *Conn, n int, retry time.Duration)
	tick        time.Duration
}

// bucket is one limit, in debt units of 2^shift ns: a message or byte
// costs unit, a full burst leaves burst*unit. A bucket with burst 0 is off.
type bucket struct {
	unit  uint32 // what one message or byte costs: its share of Per, rounded down
	shift uint8  // a debt unit is 2^shift ns
	burst uint64 // messages or bytes in a full burst
	full  uint32 // burst*unit < 2^31
}

// cost is what n messages or bytes add to the debt; n <= b.burst, so it is
// at most b.full.
func (b *bucket) cost(n uint64) uint64 { return n * uint64(b.unit) }

// pay takes d ns of the loop's clock off debt.
func (b *bucket) pay(debt uint32, d int64) uint32 {
	if paid := uint64(d) >> b.shift; paid < uint64(debt) {
		return debt - uint32(paid)
	}
	return 0
}

// excess is how long, in ns, debt must shrink before a message costing
// cost fits.
func (b *bucket) excess(debt uint32, cost uint64) int64 {
	over := uint64(debt) + cost
	if over <= uint64(b.full) {
		return 0
	}
	return int64((over - uint64(b.full)) << b.shift)
}

// stampRead stamps c.lastRead with the loop's clock, and pays c's rate
// limit debts down by the time since the previous read: they are kept as
// of its last read. On the loop, at the start of every read.
func (c *Conn) stampRead() {
	now := c.loop.stamp
	if c.rlMsgs|c.rlBytes != 0 && now > c.lastRead { // a debt implies a limiter
		lim, d := c.loop.srv.opts.limiter, now-c.lastRead
		c.rlMsgs = lim.msgs.pay(c.rlMsgs, d)
		c.rlBytes = lim.bytes.pay(c.rlBytes, d)
	}
	c.lastRead = now
}

// admit charges a whole message of n bytes to c and reports whether it is
// within the limit; a message over it is not charged. On the loop.
func (lim *limiter) admit(c *Conn, n int) bool {
	m, b := uint64(c.rlMsgs), uint64(c.rlBytes)
	if lim.msgs.burst != 0 {
		if m += lim.msgs.cost(1); m > uint64(lim.msgs.full) {
			return false
		}
	}
	if lim.bytes.burst != 0 {
		if uint64(n) > lim.bytes.burst {
			return false // cannot happen: BurstBytes >= WithMaxMessageSize
		}
		if b += lim.bytes.cost(uint64(n)); b > uint64(lim.bytes.full) {
			return false
		}
	}
	c.rlMsgs, c.rlBytes = uint32(m), uint32(b)
	return true
}

// retry is how long until a message of n bytes would pass, at the latest:
// the debt it exceeds by, plus a tick for the coarse clock (the debt is
// paid as of stamps that run up to a tick ahead of the time).
func (lim *limiter) retry(c *Conn, n int) time.Duration {
	var wait int64
	if lim.msgs.burst != 0 {
		wait = lim.msgs.excess(c.rlMsgs, lim.msgs.cost(1))
	}
	if lim.bytes.burst != 0 && uint64(n) <= lim.bytes.burst {
		wait = max(wait, lim.bytes.excess(c.rlBytes, lim.bytes.cost(uint64(n))))
	}
	return time.Duration(wait) + lim.tick
}

// rateLimit applies the limit to a whole message of n bytes about to be
// delivered; it reports whether the message may go on to OnMessage. On
// the loop.
func (c *Conn) rateLimit(n int) bool {
	lim := c.loop.srv.opts.limiter
	if lim == nil || c.lflags&lfRateExempt != 0 {
		return true
	}
	if lim.admit(c, n) {
		c.rd.refused = 0
		return true
	}
	c.loop.stats.rateLimited.Add(1)
	if lim.action == RateLimitClose {
		c.loop.srv.rateLimitCloses.Add(1)
		c.fail(ws.StatusPolicyViolation, "rate limit exceeded", ErrRateLimited)
		return false
	}
	if c.rd.refused < math.MaxUint8 {
		c.rd.refused++
	}
	if lim.onLimited != nil {
		c.callOnLimited(lim, n)
	}
	return false
}

func (c *Conn) callOnLimited(lim *limiter, n int) {
	defer c.recoverCallback()
	lim.onLimited(c, int(c.rd.refused), lim.retry(c, n))
}

// compile checks r against the other options and returns its limiter.
func (r RateLimit) compile(o *options) (*limiter, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("wsloop: WithRateLimit: "+format, args...)
	}
	per := r.Per
	switch {
	case per < 0:
		return nil, bad("Per %v is negative", per)
	case per == 0:
		per = time.Second
	}
	switch {
	case r.Messages < 0 || r.Bytes < 0 || r.Burst < 0 || r.BurstBytes < 0:
		return nil, bad("Messages %d, Bytes %d, Burst %d, BurstBytes %d: none may be negative", r.Messages, r.Bytes, r.Burst, r.BurstBytes)
	case r.Messages == 0 && r.Bytes == 0:
		return nil, bad("set Messages, Bytes or both")
	case r.Burst != 0 && r.Messages == 0:
		return nil, bad("Burst %d without Messages", r.Burst)
	case r.BurstBytes != 0 && r.Bytes == 0:
		return nil, bad("BurstBytes %d without Bytes", r.BurstBytes)
	case int64(r.Messages) > per.Nanoseconds() || int64(r.Bytes) > per.Nanoseconds():
		return nil, bad("more than one message or byte per nanosecond")
	case r.Action > RateLimitClose:
		return nil, bad("unknown Action %d", r.Action)
	case r.Action == RateLimitClose && r.OnLimited != nil:
		return nil, bad("OnLimited is called only with RateLimitDrop; with RateLimitClose, OnClose gets ErrRateLimited")
	}
	lim := &limiter{action: r.Action, onLimited: r.OnLimited, tick: o.tick}
	if r.Messages > 0 {
		b, err := newBucket(r.Messages, r.Burst, per, o.tick)
		if err != nil {
			return nil, bad("Burst: %v", err)
		}
		lim.msgs = b
	}
	if r.Bytes > 0 {
		b, err := newBucket(r.Bytes, r.BurstBytes, per, o.tick)
		if err != nil {
			return nil, bad("BurstBytes: %v", err)
		}
		if b.burst < uint64(o.maxMessageSize) {
			return nil, bad("BurstBytes %d is less than WithMaxMessageSize (%d): larger messages could never pass", b.burst, o.maxMessageSize)
		}
		lim.bytes = b
	}
	return lim, nil
}

// newBucket is a limit of rate per per, with burst (rate when 0, at least
// two ticks' worth). The debt unit is the smallest power of two of
// nanoseconds in which a full burst fits in 31 bits, and a message's (or
// byte's) share of per rounds down to whole units: the rate is exceeded
// by less than one unit per share, a part in 2^30/burst when the unit is
// over a nanosecond (New refuses more than one per nanosecond).
func newBucket(rate, burst int, per, tick time.Duration) (bucket, error) {
	if burst == 0 {
		burst = rate
	}
	burst = max(burst, int(math.Ceil(2*float64(rate)*float64(tick)/float64(per))))
	if burst > 1<<30 {
		return bucket{}, fmt.Errorf("%d is more than 2^30", burst)
	}
	full := float64(burst) * float64(per) / float64(rate) // ns
	if full >= 1<<62 {
		return bucket{}, fmt.Errorf("a full burst takes %.3g ns to earn back, too long", full)
	}
	var shift uint8
	for full/float64(uint64(1)<<shift) >= 1<<31 {
		shift++
	}
	share := float64(per) / float64(rate) / float64(uint64(1)<<shift)
	unit := uint32(share) // >= 1: per >= rate ns, and with shift > 0 a share is >= 2^30/burst units
	return bucket{unit: unit, shift: shift, burst: uint64(burst), full: unit * uint32(burst)}, nil
}
