// Usage: node deflate_client.js ws://HOST:PORT MODE
//
// Echo test for permessage-deflate with Node's ws package, as a browser
// would use it. MODE "takeover" keeps the client's compression context
// between messages (ws's default offer: "permessage-deflate;
// client_max_window_bits"); "notakeover" asks for no context takeover
// either way. Every message (compressible JSON and random bytes, 0 B to
// 1 MiB, whole and in three fragments) must come back identical. Prints
// "ok N EXTENSIONS" and exits 0, or prints the failure and exits 1.
'use strict';

const WebSocket = require('ws');
const crypto = require('crypto');

const [url, mode] = process.argv.slice(2);
const perMessageDeflate = mode === 'notakeover'
  ? { clientNoContextTakeover: true, serverNoContextTakeover: true, threshold: 0 }
  : { threshold: 0 };

function json(n) {
  let s = '';
  let i = 0;
  while (s.length < n) {
    s += `{"id":${i},"user":"user-${i % 37}","text":"hello ${i % 101} — ünïcödé","score":${(i * 7919) % 5000}},`;
    i++;
  }
  return Buffer.from(s).subarray(0, n);
}

function cases() {
  const out = [];
  for (const n of [0, 1, 255, 256, 1000, 16 << 10, 100 << 10, 1 << 20]) {
    // Cut JSON at a character boundary: it is sent as text.
    let text = json(n);
    while (text.length > 0 && (text[text.length - 1] & 0xc0) === 0x80) text = text.subarray(0, text.length - 1);
    if (text.length > 0 && text[text.length - 1] >= 0xc0) text = text.subarray(0, text.length - 1);
    out.push({ data: text, binary: false });
    out.push({ data: crypto.randomBytes(n), binary: true });
  }
  return out;
}

const ws = new WebSocket(url, { perMessageDeflate, maxPayload: 4 << 20 });
const todo = [];
for (const c of cases()) {
  todo.push({ ...c, fragmented: false });
  todo.push({ ...c, fragmented: true });
}
let done = 0;

function fail(msg) {
  console.log('FAIL ' + msg);
  process.exit(1);
}

function sendNext() {
  const c = todo[done];
  if (!c.fragmented || c.data.length < 3) {
    ws.send(c.data, { binary: c.binary, compress: true });
    return;
  }
  const a = Math.floor(c.data.length / 3);
  const b = Math.floor((2 * c.data.length) / 3);
  ws.send(c.data.subarray(0, a), { binary: c.binary, compress: true, fin: false });
  ws.send(c.data.subarray(a, b), { binary: c.binary, compress: true, fin: false });
  ws.send(c.data.subarray(b), { binary: c.binary, compress: true, fin: true });
}

ws.on('open', () => {
  if (!ws.extensions.includes('permessage-deflate')) fail('not negotiated: ' + ws.extensions);
  sendNext();
});
ws.on('message', (data, isBinary) => {
  const c = todo[done];
  if (isBinary !== c.binary || !Buffer.from(data).equals(c.data)) {
    fail(`message ${done} (${c.data.length} bytes, binary ${c.binary}, fragmented ${c.fragmented}) came back as ${data.length} bytes, binary ${isBinary}`);
  }
  done++;
  if (done === todo.length) {
    console.log(`ok ${done} ${ws.extensions}`);
    ws.close(1000);
    return;
  }
  sendNext();
});
ws.on('close', (code) => {
  if (done !== todo.length) fail('closed with ' + code + ' after ' + done + ' messages');
  process.exit(0);
});
ws.on('error', (err) => fail(String(err)));
setTimeout(() => fail('timeout after ' + done + ' messages'), 60000);
