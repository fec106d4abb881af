package engine

import (
	"runtime/debug"
)

// Every call into user code goes through these wrappers: a panic is
// recovered, logged, and fails only the connection it happened on (1011);
// the event loop and every other connection carry on.

func (c *Conn) recoverCallback() {
	if r := recover(); r != nil {
		c.onPanic(r)
	}
}

func (c *Conn) onPanic(r any) {
	pe := &PanicError{Value: r, Stack: debug.Stack()}
	s := c.loop.srv
	if s.opts.logger != nil {
		s.opts.logger.Error("wsloop: handler panic", "conn", c.id, "panic", r, "stack", string(pe.Stack))
	}
	switch c.state.Load() {
	case stateOpen, stateClosing:
		c.fail(1011, "internal server error", pe)
	case stateHandshake:
		c.refuse(500, "internal server error")
	}
}

func (c *Conn) callOnOpen() {
	defer c.recoverCallback()
	c.loop.srv.h.OnOpen(c)
}

// callOnClose runs OnClose; a panic there is only logged.
func (c *Conn) callOnClose(err error) {
	defer func() {
		if r := recover(); r != nil {
			if l := c.loop.srv.opts.logger; l != nil {
				l.Error("wsloop: panic in OnClose", "conn", c.id, "panic", r, "stack", string(debug.Stack()))
			}
		}
	}()
	c.loop.srv.h.OnClose(c, err)
}

func (c *Conn) checkOrigin() (ok bool) {
	defer c.recoverCallback() // a panic refuses with 500
	return c.loop.srv.opts.checkOrigin(&c.loop.hreq)
}

// runUpgradeHook runs the upgrade hook; ok is false when it refused (the
// response is queued).
func (c *Conn) runUpgradeHook() (value any, ok bool) {
	hook := c.loop.srv.opts.upgradeHook
	if hook == nil {
		return nil, true
	}
	defer c.recoverCallback()
	value, err := hook(&c.loop.hreq)
	if err == nil {
		return value, true
	}
	status, reason := 403, "forbidden"
	if re, isReject := err.(*RejectError); isReject {
		status, reason = re.Status, re.Reason
	}
	c.refuse(status, reason)
	return nil, false
}

func (c *Conn) runHTTPHandler(fn func(*Request) HTTPResponse) (resp HTTPResponse, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if l := c.loop.srv.opts.logger; l != nil {
				l.Error("wsloop: panic in HTTP handler", "panic", r, "stack", string(debug.Stack()))
			}
			ok = false
		}
	}()
	return fn(&c.loop.hreq), true
}
