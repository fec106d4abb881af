// Node's ws package as a chat client for node_test.go:
//
//   node chat_client.js URL
//
// URL is the server's base, ws://127.0.0.1:PORT. Two clients join a room,
// one chats, the other must see it; then one floods and must be limited.
// Prints "OK" and exits 0, or prints what went wrong and exits 1.
"use strict";
const WebSocket = require("ws");
const base = process.argv[2];
const origin = base.replace(/^ws/, "http");

function client(name) {
  const ws = new WebSocket(`${base}/ws?room=node&name=${name}`, { origin });
  const queue = [];
  let wake = null;
  ws.on("message", (data, isBinary) => {
    if (isBinary) fail("binary frame from the server");
    queue.push(JSON.parse(data.toString()));
    if (wake) { wake(); wake = null; }
  });
  ws.on("error", (e) => fail(name + ": " + e.message));
  const opened = new Promise((resolve) => ws.on("open", resolve));
  async function next(type) {
    const deadline = Date.now() + 5000;
    for (;;) {
      const i = queue.findIndex((m) => m.type === type);
      if (i >= 0) return queue.splice(i, 1)[0];
      if (Date.now() > deadline) fail(`${name}: no "${type}" within 5s; got ${JSON.stringify(queue)}`);
      await new Promise((r) => { wake = r; setTimeout(r, 100); });
    }
  }
  const say = (text) => ws.send(JSON.stringify({ type: "chat", text }));
  return { ws, opened, next, say };
}

function fail(why) {
  console.log("FAIL " + why);
  process.exit(1);
}

(async () => {
  const ann = client("ann");
  await ann.opened;
  const w = await ann.next("welcome");
  if (w.room !== "node" || w.name !== "ann" || w.viewers !== 1) fail("welcome " + JSON.stringify(w));
  const bob = client("bob");
  await bob.opened;
  if ((await bob.next("welcome")).viewers !== 2) fail("bob's viewer count");
  const j = await ann.next("join");
  if (j.name !== "ann") fail("ann's own join first");
  if ((await ann.next("join")).viewers !== 2) fail("bob's join count");

  bob.say("héllo from node ✓");
  const m = await ann.next("chat");
  if (m.name !== "bob" || m.text !== "héllo from node ✓") fail("chat " + JSON.stringify(m));

  for (let i = 0; i < 20; i++) ann.say("flood " + i);
  const l = await ann.next("limited");
  if (!(l.retry_ms > 0) || !/Slow down/.test(l.text)) fail("limited " + JSON.stringify(l));

  bob.ws.close(1000);
  const left = await ann.next("leave");
  if (left.name !== "bob" || left.viewers !== 1) fail("leave " + JSON.stringify(left));
  ann.ws.close(1000);
  console.log("OK");
  process.exit(0);
})();
