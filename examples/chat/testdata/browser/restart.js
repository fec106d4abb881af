// Drives examples/chat's page in headless Chromium across a restart in
// place of the chat process (SIGHUP), for browser_test.go's
// TestBrowserRestartInPlace.
//
//   node restart.js CHROMIUM URL
//
// URL is a room page, http:// or https:// (self-signed: Chromium ignores
// certificate errors). Two tabs join the room; every change of each tab's
// connection state (#state) and every line added to its log are recorded
// in the page from then on. Tab A then sends "tick N" through its form
// every TICK_MS, and once tab B has shown a few, the script prints
// "RESTART" and waits for the test to answer "RESTARTED" on stdin (the
// test has sent SIGHUP, and the old process has exited); A sends on for
// TICK_MS * AFTER more, then stops.
//
// Over http:// the connections are handed over: neither tab may ever have
// left the open state, tab B must show every tick A sent, in order, once
// each, and no line but chat lines (no leave, join or welcome). Over
// https:// they are drained: each tab must have shown "reconnecting" and
// be open again, in the same room, 2 viewers. Either way a message sent in
// one tab after the restart then shows in the other. Steps print "OK
// <step>" or "FAIL <step>: <why>" (then exit 1), as browser.js does.
"use strict";
const { STEP_MS, ask, step, text, stateIs, logHas, post, launch, record, states, log, ticks, stopTicks, ticksShown, allTicks } = require("./page");

const [chromiumPath, url] = process.argv.slice(2);
const keep = url.startsWith("http:"); // connections kept (ws), or drained (wss)
const TICK_MS = 100;
const AFTER = 20; // ticks after the restart

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
    await post(b, "before the restart");
    await logHas(a, "before the restart");
    await logHas(b, "before the restart");
    for (const p of [a, b]) await record(p);
  });
  let sent = 0;
  const t0 = Date.now();
  await step("tab A sends a tick every 100 ms, tab B shows them", async () => {
    await a.bringToFront(); // a tab in the background has its timers slowed
    await ticks(a, TICK_MS);
    await b.waitForFunction(() => window.__log.filter((l) => /^tick \d+$/.test(l.text)).length >= 5, null, { timeout: STEP_MS });
  });
  const answer = await ask("RESTART");
  if (answer !== "RESTARTED") throw new Error(`no RESTARTED after RESTART: ${answer}`);
  const restarted = Date.now();
  await step(`ticks go on for ${AFTER * TICK_MS} ms after the old process exited`, async () => {
    await a.waitForTimeout(AFTER * TICK_MS);
    sent = await stopTicks(a);
    const secs = (Date.now() - t0) / 1000;
    if (sent < (Date.now() - restarted) / TICK_MS / 2) throw new Error(`only ${sent} ticks in ${secs} s`);
    console.log(`sent ${sent} ticks in ${secs.toFixed(1)} s; the restart took ${restarted - t0} ms of it`);
  });
  if (keep) {
    await step("tab B shows every tick, in order, once each", async () => {
      await allTicks(b, sent);
      const ownA = (await log(a)).filter((l) => /^tick \d+$/.test(l.text)).length;
      if (ownA !== sent) throw new Error(`tab A shows ${ownA} of its ${sent} ticks`);
    });
    await step("neither tab ever left the open state, nor saw a leave, join or welcome", async () => {
      for (const [p, tab] of [[a, "A"], [b, "B"]]) {
        const s = await states(p);
        if (s.length !== 1 || s[0] !== "open") throw new Error(`tab ${tab}'s states: ${JSON.stringify(s)}`);
        const other = (await log(p)).filter((l) => l.cls !== "chat" && l.cls !== "chat mine");
        if (other.length) throw new Error(`tab ${tab}'s log: ${JSON.stringify(other)}`);
      }
    });
  } else {
    await step("both tabs showed reconnecting and are open again, 2 viewers, welcomed back", async () => {
      for (const [p, tab] of [[a, "A"], [b, "B"]]) {
        await stateIs(p, "open");
        const s = await states(p);
        if (!s.includes("reconnecting") || s[s.length - 1] !== "open") throw new Error(`tab ${tab}'s states: ${JSON.stringify(s)}`);
        await text(p, "#viewers", "2");
        await logHas(p, "you are back in #");
      }
    });
  }
  await step("a message sent in one tab after the restart shows in the other", async () => {
    await post(b, "hello after the restart");
    await logHas(a, "hello after the restart");
    await post(a, "and back");
    await logHas(b, "and back");
  });
});
