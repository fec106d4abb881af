// Drives examples/chat's page in headless Chromium for browser_test.go.
//
//   node browser.js CHROMIUM URL
//
// URL is a room page (http://127.0.0.1:PORT/ROOM, or https:// with a
// self-signed certificate: Chromium then ignores certificate errors, and
// the page must have opened its socket over wss://). Every step waits in
// real time, at most STEP_MS, and prints "OK <step>" when it holds; the
// first that does not prints "FAIL <step>: <why>" and exits 1. Between the
// steps that need the server stopped and started again, the script prints
// "STOP" or "START" and waits for the test to answer "DONE" on stdin.
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");

const [chromiumPath, url] = process.argv.slice(2);
const STEP_MS = 20000;

const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => { const w = waiting.shift(); if (w) w(l.trim()); });
const ask = (what) => new Promise((resolve) => { waiting.push(resolve); console.log(what); });

async function step(name, fn) {
  try {
    await fn();
    console.log("OK " + name);
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

(async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "wsloop-chromium-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"].concat(url.startsWith("https:") ? ["--ignore-certificate-errors"] : []),
    ignoreHTTPSErrors: url.startsWith("https:"),
  });
  const sockets = []; // the sockets the pages open: an https page must use wss
  let code = 0;
  try {
    const a = await ctx.newPage();
    const b = await ctx.newPage();
    for (const p of [a, b]) p.on("websocket", (ws) => sockets.push(ws.url()));
    await step("first tab connects, 1 viewer", async () => {
      await a.goto(url);
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
    await step("a message sent in one tab shows in the other", async () => {
      await send(b, "hello from tab B");
      await logHas(a, "hello from tab B");
      await logHas(b, "hello from tab B");
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
  } catch (e) {
    code = 1;
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  lines.close();
  process.exit(code);
})();
