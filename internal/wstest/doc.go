// Package wstest is a test-only WebSocket client that speaks raw frames, and
// a Go port of the Autobahn TestSuite server cases 1 to 10, and 12 and 13
// (permessage-deflate, on the standard library's compress/flate), built on
// it.
//
// Use Dial to open a connection and run the opening handshake (DialRaw and
// UpgradeRequest when a test needs to send a handshake of its own). Conn
// writes any client frame, valid or not (WriteFrame, WriteRaw, AppendFrame),
// reads server frames (ReadFrame, ReadMessage) and runs the closing
// handshake the way Autobahn's client does (ExpectClose). Classify tells
// whether a read ended because the server closed the TCP connection, reset
// it, or because the deadline passed.
//
// Use RunAutobahn to run the Autobahn cases against an echo server as
// subtests named by case id ("1.1.1", "6.4.3", ...). Each case sends what the
// Python suite sends (payloads, fragmentation, chop sizes, waits, pings and
// closes) and judges the outcome as the suite's case.py does. AutobahnCases
// lists the case ids and descriptions.
//
// Nothing here is meant for production: masks are plain XOR, everything is
// buffered in memory, and errors are reported for tests to read.
package wstest
