// Helpers that browser.js and restart.js share: the steps, the questions
// to the Go test, Chromium, and waits and actions on the chat page.
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

module.exports = { STEP_MS, ask, step, text, stateIs, logHas, send, post, launch };
