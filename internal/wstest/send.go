package wstest

import "bytes"

// txFrame holds sendFrame's keyword arguments.
type txFrame struct {
	fin       bool
	rsv       byte
	repeatLen int
	repeat    bool
	chop      int
	sync      bool
}

// frameOpt is one of sendFrame's keyword arguments.
type frameOpt func(*txFrame)

// fin sets the FIN bit (default true).
func fin(v bool) frameOpt { return func(t *txFrame) { t.fin = v } }

// rsv sets the RSV bits.
func rsv(n byte) frameOpt { return func(t *txFrame) { t.rsv = n } }

// payloadLen is payload_len: the payload is repeated (and cut) to n bytes.
func payloadLen(n int) frameOpt { return func(t *txFrame) { t.repeatLen, t.repeat = n, true } }

// chopsize writes the frame's bytes in pieces of n, each its own write.
func chopsize(n int) frameOpt { return func(t *txFrame) { t.chop = n } }

// synced is sync=True: the frame is written on its own.
func synced(v bool) frameOpt { return func(t *txFrame) { t.sync = v } }

// sendFrame is autobahn's sendFrame: a masked frame with a fresh random
// mask, however invalid, queued for the writer.
func (s *session) sendFrame(op byte, payload string, opts ...frameOpt) {
	t := txFrame{fin: true}
	for _, o := range opts {
		o(&t)
	}
	var pl []byte
	if t.repeat {
		pl = repeatTo([]byte(payload), t.repeatLen)
	} else {
		pl = []byte(payload)
	}
	f := Frame{Fin: t.fin, Rsv: t.rsv, Op: op, Masked: true, Mask: RandomMask(), Payload: pl, Length: -1}
	s.txFrames[op]++
	s.w.push(wchunk{b: AppendFrame(make([]byte, 0, len(pl)+14), f), chop: t.chop, sync: t.sync})
}

func repeatTo(p []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	b := bytes.Repeat(p, n/len(p)+1)
	return b[:n]
}

// sendMessage is autobahn's sendMessage: one frame, or fragments of
// fragmentSize (autoFragmentSize when 0). As in autobahn, a payload that is
// a multiple of the fragment size ends with an empty final fragment.
func (s *session) sendMessage(payload string, binary bool, fragmentSize int) {
	op := OpText
	if binary {
		op = OpBinary
	}
	pfs := fragmentSize
	if pfs == 0 {
		pfs = s.autoFragmentSize
	}
	if pfs <= 0 || len(payload) <= pfs {
		s.sendFrame(op, payload)
		return
	}
	n := len(payload)
	for i, done := 0, false; !done; i += pfs {
		j := i + pfs
		if j > n {
			done, j = true, n
		}
		s.sendFrame(op, payload[i:j], fin(done))
		op = OpContinuation
	}
}

// beginMessageFrame, sendMessageFrameData and endMessage are autobahn's
// streaming API: a text frame header with FIN clear and the whole length,
// its payload in separate writes, then an empty final continuation frame.
func (s *session) beginMessageFrame(length int) {
	s.streamMask, s.streamPos = RandomMask(), 0
	f := Frame{Op: OpText, Masked: true, Mask: s.streamMask, Length: int64(length)}
	s.txFrames[OpText]++
	s.w.push(wchunk{b: AppendFrame(nil, f)})
}

func (s *session) sendMessageFrameData(data string) {
	b := []byte(data)
	maskBytes(s.streamMask, s.streamPos, b)
	s.streamPos += len(b)
	s.w.push(wchunk{b: b})
}

func (s *session) endMessage() { s.sendFrame(OpContinuation, "") }
