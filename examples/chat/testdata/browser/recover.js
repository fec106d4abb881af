// Drives examples/chat's page in headless Chromium through a dropped
// connection, for browser_test.go's TestBrowserRecover.
//
//   node recover.js CHROMIUM URL
//
// Two tabs join the room at URL; tab A sends "tick N" every TICK_MS. Once
// tab B has shown a few, the script prints "CUT" and waits for the test
// to answer "DONE": the test has closed tab B's connection from the
// server. A sends on while B reconnects (after its backoff) and for
// TICK_MS * AFTER after B is open again. B must then show every tick A
// sent, in order, once each (the ones sent while it was away recovered
// from the room's history: no reload), and say how many it recovered, at
// least one. The last message B gets before the cut has an empty epoch,
// as a cluster node's page gets one while the node cannot reach NATS
// (broker/nats's WithHistory): B shows it, and still reconnects with the
// position of the tick before it, which it must not forget. Steps print "OK <step>" or "FAIL <step>: <why>" (then exit
// 1), as browser.js does.
"use strict";
const { STEP_MS, ask, step, text, stateIs, logHas, post, launch, record, states, log, ticks, stopTicks, allTicks } = require("./page");

const [chromiumPath, url] = process.argv.slice(2);
const TICK_MS = 100;
const AFTER = 10;

launch(chromiumPath, url, async (ctx) => {
  const a = await ctx.newPage();
  const b = await ctx.newPage();
  await step("two tabs join the room, 2 viewers", async () => {
    await a.goto(url);
    await stateIs(a, "open");
    await b.goto(url);
    await stateIs(b, "open");
    await text(a, "#viewers", "2");
    await text(b, "#viewers", "2");
    for (const p of [a, b]) await record(p);
  });
  await step("tab A sends a tick every 100 ms, tab B shows them", async () => {
    await a.bringToFront(); // a tab in the background has its timers slowed
    await ticks(a, TICK_MS);
    await b.waitForFunction(() => window.__log.filter((l) => /^tick \d+$/.test(l.text)).length >= 5, null, { timeout: STEP_MS });
  });
  // The socket's close event comes after every message it brought: a
  // listener there hands B, through the socket, a message with no position
  // last.
  await b.evaluate(() => {
    const sock = ws;
    sock.addEventListener("close", () => sock.dispatchEvent(new MessageEvent("message", {
      data: JSON.stringify({ epoch: "", offset: 0, type: "chat", name: "nats-down", text: "sent while NATS was down" }),
    })));
  });
  const answer = await ask("CUT");
  if (answer !== "DONE") throw new Error(`no DONE after CUT: ${answer}`);
  let sent = 0;
  await step("tab B's connection is cut; it reconnects while tab A sends on", async () => {
    await b.waitForFunction(() => window.__states.includes("reconnecting"), null, { timeout: STEP_MS });
    await stateIs(b, "open");
    await a.waitForTimeout(AFTER * TICK_MS);
    sent = await stopTicks(a);
  });
  await step("tab B shows every tick, in order, once each, and the ones it missed were recovered", async () => {
    await allTicks(b, sent);
    const notes = (await log(b)).filter((l) => l.cls === "notice").map((l) => l.text);
    const back = notes.filter((n) => n.includes("you are back in #"));
    if (back.length !== 1) throw new Error(`tab B's notices: ${JSON.stringify(notes)}`);
    const m = /: (\d+) missed messages? shown above/.exec(back[0]);
    if (!m || Number(m[1]) < 1) throw new Error(`tab B's notice after the reconnect: ${back[0]}`);
    if (notes.some((n) => n.includes("not available"))) throw new Error(`tab B's notices: ${JSON.stringify(notes)}`);
    const down = (await log(b)).filter((l) => l.text === "sent while NATS was down");
    if (down.length !== 1) throw new Error(`tab B shows the message with no position ${down.length} times`);
    const s = await states(b);
    console.log(`sent ${sent} ticks; tab B recovered ${m[1]} messages; its states: ${JSON.stringify(s)}`);
  });
  await step("the tabs chat after the recovery", async () => {
    await post(b, "hello after the cut");
    await logHas(a, "hello after the cut");
    await text(b, "#viewers", "2");
  });
});
