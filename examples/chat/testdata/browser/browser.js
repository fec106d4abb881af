// Drives examples/chat's page in headless Chromium for browser_test.go.
//
//   node browser.js CHROMIUM URL [SCREENS]
//
// URL is a room page (http://127.0.0.1:PORT/ROOM, or https:// with a
// self-signed certificate: Chromium then ignores certificate errors, and
// the page must have opened its socket over wss://). With SCREENS, a
// directory, the same server's /dashboard is checked too, both pages are
// checked for fitting a 360 px wide screen, and photographed into SCREENS
// at desktop (1280x800) and phone (360x740) width. Every step waits in
// real time, at most STEP_MS, and prints "OK <step>" when it holds; the
// first that does not prints "FAIL <step>: <why>" and exits 1. Between the
// steps that need the server stopped and started again, the script prints
// "STOP" or "START" and waits for the test to answer "DONE" on stdin.
"use strict";
const path = require("path");
const { STEP_MS, ask, step, text, stateIs, logHas, send, post, launch } = require("./page");

const [chromiumPath, url, screens] = process.argv.slice(2);
const dashboardURL = new URL("/dashboard", url).href;

// watchDanmaku records every danmaku element the page adds (its text, and
// its animation as it starts), so that a check does not race the element's
// removal when its flight ends.
const watchDanmaku = (page) => page.evaluate(() => {
  window.__danmaku = [];
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType === 1 && n.classList.contains("dm") && n.closest("#stage")) {
        window.__danmaku.push({ text: n.textContent, animation: getComputedStyle(n).animationName });
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
});

// danmaku waits for a danmaku element whose text is exactly s, and returns
// its animation's name.
const danmaku = (page, s) => page.waitForFunction(
  (s) => window.__danmaku?.find((d) => d.text === s)?.animation, s, { timeout: STEP_MS, polling: 50 }).then((h) => h.jsonValue());

// figure reads a dashboard card's figure: which is "now" (the rate a
// second, or the level) or "total".
const figure = (page, stat, which) => page.evaluate(([stat, which]) => {
  const el = document.querySelector(`[data-stat="${stat}"] .${which}`);
  return el ? Number(el.dataset.value) : NaN;
}, [stat, which]);

// noOverflow fails when the page is wider than its viewport (a sideways
// scroll on a phone).
async function noOverflow(page, width) {
  const w = await page.evaluate(() => document.documentElement.scrollWidth);
  if (w > width) throw new Error(`${page.url()}: scrollWidth ${w} > ${width}`);
}

launch(chromiumPath, url, async (ctx) => {
  const sockets = []; // the sockets the pages open: an https page must use wss
  const a = await ctx.newPage();
  const b = await ctx.newPage();
  let fly = ""; // the danmaku's animation
  for (const p of [a, b]) p.on("websocket", (ws) => sockets.push(ws.url()));
  await step("first tab connects, 1 viewer", async () => {
    await a.goto(url);
    await watchDanmaku(a);
    await stateIs(a, "open");
    await text(a, "#viewers", "1");
    const want = url.startsWith("https:") ? "wss:" : "ws:";
    if (!sockets.length || !sockets.every((s) => s.startsWith(want))) throw new Error("sockets " + JSON.stringify(sockets));
  });
  await step("second tab connects, both see 2 viewers", async () => {
    await b.goto(url);
    await stateIs(b, "open");
    await text(b, "#viewers", "2");
    await text(a, "#viewers", "2");
  });
  await step("a message sent in one tab shows in the other, on the log and flying across the stage", async () => {
    await send(b, "hello from tab B");
    fly = await danmaku(a, "hello from tab B");
    await logHas(a, "hello from tab B");
    await logHas(b, "hello from tab B");
    // Each line has a time, and each user a colour: the same in every tab.
    const line = (p) => p.evaluate(() => {
      const li = [...document.querySelectorAll("#log li.chat")].pop();
      return li && { time: li.querySelector("time")?.textContent, colour: li.querySelector(".name")?.style.color };
    });
    const la = await line(a), lb = await line(b);
    if (!la || !/^\d\d:\d\d$/.test(la.time) || !la.colour || la.colour !== lb.colour) {
      throw new Error("time and colour " + JSON.stringify([la, lb]));
    }
  });
  await step("one's own join shows once (the welcome), not again as a join", async () => {
    // Each tab has had its own join by now: the server sends it before
    // the message of the step before.
    for (const p of [a, b]) {
      const lines = await p.evaluate(() => {
        const me = document.getElementById("name").value;
        return [...document.querySelectorAll("#log li")].map((li) => li.textContent)
          .filter((t) => t.includes("joined") && t.includes(me));
      });
      if (lines.length !== 1 || !lines[0].includes("you joined")) throw new Error("own join lines " + JSON.stringify(lines));
    }
  });
  await step("user text is shown as text, never as markup", async () => {
    const evil = "<img src=x onerror=window.__pwned=1><b>bold</b>";
    await post(b, evil);
    await danmaku(a, evil);
    await logHas(a, evil);
    const bad = await a.evaluate(() => window.__pwned || document.querySelector("#log img, #log b, #stage img, #stage b") !== null);
    if (bad) throw new Error("markup from a message was rendered");
  });
  await step("with reduced motion the danmaku fades in place instead of flying", async () => {
    await a.emulateMedia({ reducedMotion: "reduce" });
    await post(b, "calm please");
    const calm = await danmaku(a, "calm please");
    await a.emulateMedia({ reducedMotion: "no-preference" });
    if (!calm || calm === "none" || calm === fly) throw new Error(`animations: ${fly} flying, ${calm} reduced`);
  });
  const d = screens && await ctx.newPage();
  if (screens) await step("the dashboard's figures move when messages flow", async () => {
    await d.goto(dashboardURL);
    await d.waitForFunction(() => Number(document.querySelector('[data-stat="Connections"] .now')?.dataset.value) === 2,
      null, { timeout: STEP_MS });
    const in0 = await figure(d, "MessagesIn", "total");
    if (!(in0 >= 3)) throw new Error("MessagesIn total " + in0);
    for (const m of ["one", "two", "three"]) await post(a, m);
    await d.waitForFunction((in0) => {
      const v = (stat, which) => Number(document.querySelector(`[data-stat="${stat}"] .${which}`)?.dataset.value);
      return v("MessagesIn", "total") >= in0 + 3 && v("MessagesIn", "now") > 0 && v("MessagesOut", "now") > 0;
    }, in0, { timeout: STEP_MS });
    const loops = await d.evaluate(() => [...document.querySelectorAll("#loops .loop")].map((l) => Number(l.dataset.value)));
    if (!loops.length || loops.reduce((x, y) => x + y, 0) < 2) throw new Error("per-loop connections " + JSON.stringify(loops));
    const rows = await d.evaluate(() => [...document.querySelectorAll("#all [data-stat]")].map((r) => r.dataset.stat));
    for (const f of ["SlowCloses", "LoopStalls", "Broker.Connected"]) {
      if (!rows.includes(f)) throw new Error("no row for " + f + " in " + JSON.stringify(rows));
    }
  });
  if (screens) await step("both pages fit a 360 px phone screen; screenshots taken", async () => {
    // Messages in flight for the pictures: each batch is sent a moment
    // before its chat picture, so that it has flown some way in.
    const chatter = async (...batch) => {
      for (const m of batch) await post(b, m);
      await danmaku(a, batch[batch.length - 1]);
    };
    await chatter("gg, what a play", "¡olé! from a phone");
    for (const [w, h] of [[1280, 800], [360, 740]]) {
      for (const [p, what] of [[a, "chat"], [d, "dashboard"]]) {
        await p.setViewportSize({ width: w, height: h });
        await p.waitForTimeout(200); // the dashboard redraws its charts on resize
        if (w === 360) await noOverflow(p, w);
        await p.screenshot({ path: path.join(screens, `${what}-${w}x${h}.png`) });
        if (what === "chat" && w === 1280) await chatter("that was close!!", "hello from the back row");
      }
    }
    await d.close();
  });
  await step("closing a tab: the other sees 1 viewer", async () => {
    await b.close();
    await text(a, "#viewers", "1");
    await logHas(a, "left");
  });
  if ((await ask("STOP")) !== "DONE") throw new Error("no DONE after STOP");
  await step("server stopped: the page says it is reconnecting", async () => {
    await stateIs(a, "reconnecting");
    const t = await a.textContent("#state");
    if (!/reconnecting/.test(t)) throw new Error("state text " + JSON.stringify(t));
    if (!(await a.isDisabled("#send"))) throw new Error("send button enabled while disconnected");
  });
  if ((await ask("START")) !== "DONE") throw new Error("no DONE after START");
  await step("server back: the page recovers and chats again", async () => {
    await stateIs(a, "open");
    await text(a, "#viewers", "1");
    await send(a, "back again");
    await logHas(a, "back again");
  });
});
