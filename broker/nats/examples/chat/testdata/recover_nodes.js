// Drives the cluster chat's page in headless Chromium through a move from
// one node to another, for browser_test.go's TestBrowserRecoverAcrossNodes.
// It uses examples/chat's browser helpers (page.js) and their npm
// packages (examples/chat/testdata/browser: npm ci there).
//
//   node recover_nodes.js CHROMIUM URL
//
// URL is a room page behind the test's TCP proxy, which forwards to node 1.
// The script asks the test (a line on stdout, answered "DONE" on stdin):
// "SEND N" to have N more "tick K" messages sent to the room by clients of
// the nodes' own (K counts on from the last), "CUT" to close every proxied
// connection, send ticks while the page is away, and point the proxy at
// node 2. The page must reconnect by itself (no reload) through the proxy
// to node 2, give the position of the last message it saw, and show every
// tick once, in order: the ones sent while it was away recovered from the
// history that node 2 keeps from the cluster's stream, and say so. Steps
// print "OK <step>" or "FAIL <step>: <why>" (then exit 1).
"use strict";
const { STEP_MS, ask, step, stateIs, logHas, post, launch, record, states, log, allTicks } =
  require("../../../../../examples/chat/testdata/browser/page");

const [chromiumPath, url] = process.argv.slice(2);

// send asks the test for n more ticks and returns how many were sent in all.
async function send(n) {
  const answer = await ask(`SEND ${n}`);
  const m = /^DONE (\d+)$/.exec(answer);
  if (!m) throw new Error(`SEND ${n}: ${answer}`);
  return Number(m[1]);
}

launch(chromiumPath, url, async (ctx) => {
  const p = await ctx.newPage();
  const sockets = [];
  p.on("websocket", (ws) => sockets.push(ws.url()));
  let sent = 0;
  await step("the page joins the room on node 1, through the proxy", async () => {
    await p.goto(url);
    await stateIs(p, "open");
    await record(p);
  });
  await step("it shows the ticks sent on node 1", async () => {
    sent = await send(5);
    await allTicks(p, sent);
  });
  const answer = await ask("CUT");
  const m = /^DONE (\d+)$/.exec(answer);
  if (!m) throw new Error(`no DONE after CUT: ${answer}`);
  sent = Number(m[1]);
  await step("its socket cut, it reconnects through the proxy, to node 2, with its position", async () => {
    await p.waitForFunction(() => window.__states.includes("reconnecting"), null, { timeout: STEP_MS });
    await stateIs(p, "open");
    const last = sockets[sockets.length - 1];
    if (sockets.length < 2 || !/[?&]epoch=[^&]+&offset=\d+/.test(last)) throw new Error(`sockets ${JSON.stringify(sockets)}`);
  });
  await step("it shows every tick, in order, once each, the missed ones recovered on node 2", async () => {
    sent = await send(5); // live, after the recovery
    await allTicks(p, sent);
    const notes = (await log(p)).filter((l) => l.cls === "notice").map((l) => l.text);
    const back = notes.filter((n) => n.includes("you are back in #"));
    if (back.length !== 1) throw new Error(`notices: ${JSON.stringify(notes)}`);
    const m = /: (\d+) missed messages? shown above/.exec(back[0]);
    if (!m || Number(m[1]) < 10) throw new Error(`the notice after the reconnect: ${back[0]}`);
    if (notes.some((n) => n.includes("not available"))) throw new Error(`notices: ${JSON.stringify(notes)}`);
    console.log(`sent ${sent} ticks; the page recovered ${m[1]} messages; its states: ${JSON.stringify(await states(p))}; sockets: ${JSON.stringify(sockets)}`);
  });
  await step("the page chats on node 2", async () => {
    await post(p, "hello from node 2");
    await logHas(p, "hello from node 2");
    if ((await ask("HEARD hello from node 2")) !== "DONE") throw new Error("the other clients did not get it");
  });
});
