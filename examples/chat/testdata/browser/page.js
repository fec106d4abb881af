// Helpers that browser.js, restart.js and recover.js share (and
// broker/nats/examples/chat/testdata/recover_nodes.js, by relative path):
// the steps, the questions to the Go test, Chromium, and waits and
// actions on the chat page.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");

const STEP_MS = 20000;

const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => { const w = waiting.shift(); if (w) w(l.trim()); });
const T0 = Date.now();

// ask prints what on stdout and resolves with the next line on stdin: the
// Go test's answer.
const ask = (what) => new Promise((resolve) => { waiting.push(resolve); console.log(what); });

// step runs fn and prints "OK <name>" when it holds, or "FAIL <name>: <why>"
// and throws.
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`OK ${name} (${Date.now() - t0} ms, at ${Date.now() - T0} ms)`);
  } catch (e) {
    console.log("FAIL " + name + ": " + String(e && e.message || e).split("\n")[0]);
    throw e;
  }
}

const text = (page, sel, want) => page.waitForFunction(
  ([sel, want]) => document.querySelector(sel)?.textContent === want, [sel, want], { timeout: STEP_MS });
const stateIs = (page, cls) => page.waitForFunction(
  (cls) => document.getElementById("state").className === cls, cls, { timeout: STEP_MS });
const logHas = (page, s) => page.waitForFunction(
  (s) => [...document.querySelectorAll("#log li")].some((li) => li.textContent.includes(s)), s, { timeout: STEP_MS });

async function send(page, msg) {
  await page.fill("#text", msg);
  await page.click("#send");
}

// post sends msg through the page's form without Playwright's input
// events, which wait for a tab in the background to paint (a second or
// more each).
const post = (page, msg) => page.evaluate((msg) => {
  document.getElementById("text").value = msg;
  document.getElementById("form").requestSubmit();
}, msg);

// launch starts headless Chromium on a fresh profile for url (ignoring
// certificate errors for https://); run gets the browser context, and its
// failure makes the process exit 1 once Chromium is closed.
async function launch(chromiumPath, url, run) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wsloop-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"].concat(url.startsWith("https:") ? ["--ignore-certificate-errors"] : []),
    ignoreHTTPSErrors: url.startsWith("https:"),
  });
  let code = 0;
  try {
    await run(ctx);
  } catch (e) {
    code = 1;
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  lines.close();
  process.exit(code);
}

// record keeps, in the page, every class #state takes and every line added
// to #log from now on (the log keeps only its last 500 lines).
const record = (page) => page.evaluate(() => {
  const state = document.getElementById("state");
  window.__states = [state.className];
  new MutationObserver(() => {
    if (window.__states[window.__states.length - 1] !== state.className) window.__states.push(state.className);
  }).observe(state, { attributes: true, attributeFilter: ["class"] });
  window.__log = [];
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType !== 1 || n.tagName !== "LI") continue;
      const name = n.querySelector(".name")?.textContent || "";
      const t = n.querySelector("time")?.textContent || "";
      // The line's text without its time and name.
      window.__log.push({ cls: n.className, name, text: n.textContent.slice(t.length + name.length) });
    }
  }).observe(document.getElementById("log"), { childList: true });
});
const states = (page) => page.evaluate(() => window.__states);
const log = (page) => page.evaluate(() => window.__log);

// ticks sends "tick N" through the page's form every ms, in the page
// itself (as fast as a typing user, without a round trip to Node each),
// counting from 1; stopTicks stops it and returns how many were sent.
const ticks = (page, ms) => page.evaluate((ms) => {
  window.__sent = 0;
  window.__ticker = setInterval(() => {
    document.getElementById("text").value = `tick ${++window.__sent}`;
    document.getElementById("form").requestSubmit();
  }, ms);
}, ms);
const stopTicks = (page) => page.evaluate(() => { clearInterval(window.__ticker); return window.__sent; });
const ticksShown = (page) => page.evaluate(() => window.__log.filter((l) => /^tick \d+$/.test(l.text)).length);

// allTicks waits until page shows sent ticks, and fails unless they are
// exactly 1 to sent, in order, once each (a duplicate gets 300 ms to come).
async function allTicks(page, sent) {
  try {
    await page.waitForFunction((n) => window.__log.filter((l) => /^tick \d+$/.test(l.text)).length >= n, sent, { timeout: STEP_MS });
  } catch (e) {
    throw new Error(`the tab shows ${await ticksShown(page)} of ${sent} ticks; its states: ${JSON.stringify(await states(page))}`);
  }
  await page.waitForTimeout(300);
  const got = (await log(page)).filter((l) => /^tick \d+$/.test(l.text)).map((l) => Number(l.text.slice(5)));
  const want = Array.from({ length: sent }, (_, i) => i + 1);
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    const bad = got.findIndex((n, i) => n !== i + 1);
    throw new Error(`${got.length} ticks of ${sent}, first wrong at ${bad}: ${JSON.stringify(got.slice(Math.max(0, bad - 3), bad + 3))}`);
  }
}

module.exports = { STEP_MS, ask, step, text, stateIs, logHas, send, post, launch, record, states, log, ticks, stopTicks, ticksShown, allTicks };
